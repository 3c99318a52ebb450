// The mailing form: only the chosen channel's fields are shown (and sent), and as the form
// changes the server tells how many clients it reaches, how long that takes at the channel's
// rate, the text as the first of them gets it, and the first rule the form breaks. Nothing is
// stored until the form is sent.
(function () {
  const form = document.querySelector("form.mailing-form");
  if (!form) return;
  const channel = form.querySelector("#channel");
  const showChannel = () => {
    for (const part of form.querySelectorAll("[data-channels]")) {
      const on = part.dataset.channels.split(" ").includes(channel.value);
      part.hidden = !on;
      // A disabled fieldset's fields are not sent: another channel's parts stay out.
      part.disabled = !on;
    }
  };
  channel.addEventListener("change", showChannel);
  showChannel();

  const audience = form.querySelector(".preview .audience");
  const sampleText = form.querySelector(".sample-text");
  const sampleError = form.querySelector(".sample-error");
  const duration = (secs) => {
    if (secs === null || secs === undefined) return "";
    if (secs < 90) return ", about " + Math.ceil(secs) + " s at the channel's rate";
    if (secs < 5400) return ", about " + Math.round(secs / 60) + " min at the channel's rate";
    return ", about " + (secs / 3600).toFixed(1) + " h at the channel's rate";
  };
  let asked = 0;
  const refresh = async () => {
    const mine = ++asked;
    let answer;
    try {
      const response = await fetch(form.dataset.preview, {
        method: "POST",
        body: new URLSearchParams(new FormData(form)),
      });
      if (!response.ok) return;
      answer = await response.json();
    } catch (e) {
      return;
    }
    // An older answer that arrives late is not shown over a newer one.
    if (mine !== asked) return;
    audience.textContent = answer.recipients === null
      ? ""
      : answer.recipients + (answer.recipients === 1 ? " client" : " clients") + duration(answer.expected_duration_secs);
    sampleText.textContent = answer.sample || "";
    const problem = answer.error || answer.sample_error;
    sampleError.hidden = !problem;
    sampleError.textContent = problem
      ? (answer.field ? answer.field.replace("_", " ") + ": " : "") + problem
      : "";
  };
  let timer;
  const later = () => {
    clearTimeout(timer);
    timer = setTimeout(refresh, 300);
  };
  form.addEventListener("input", later);
  form.addEventListener("change", later);
  refresh();
})();

// The mailing page follows its mailing's event stream and updates itself in place: the state,
// the progress bar and the counts. No reload, no other host.
(function () {
  const page = document.querySelector("[data-events]");
  if (!page || !window.EventSource) return;
  const events = new EventSource(page.dataset.events);
  const show = (message) => {
    const p = JSON.parse(message.data);
    document.querySelector(".facts .state").textContent = p.state;
    for (const action of document.querySelectorAll(".actions [data-states]")) {
      action.hidden = !action.dataset.states.split(" ").includes(p.state);
    }
    const bar = document.querySelector("progress");
    bar.max = p.total;
    bar.value = p.finished;
    document.querySelector(".percent").textContent = p.percent + " %";
    document.querySelector(".finished").textContent = p.finished;
    document.querySelector(".total").textContent = p.total;
    const body = document.querySelector(".counts tbody");
    for (const [state, count] of Object.entries(p.counts)) {
      let cell = body.querySelector('[data-count="' + state + '"]');
      if (!cell) {
        const row = body.insertRow();
        const link = document.createElement("a");
        link.href = location.pathname + "?state=" + encodeURIComponent(state);
        link.textContent = state;
        row.insertCell().append(link);
        cell = row.insertCell();
        cell.dataset.count = state;
      }
      cell.textContent = count;
    }
  };
  events.addEventListener("progress", show);
  events.addEventListener("done", (message) => { show(message); events.close(); });
  events.addEventListener("error", () => events.close());
})();

// The import page uploads the chosen CSV file as it is (so the server reads it as the API's
// import does), shows the upload's progress, then what was imported and each bad row's line
// and reason.
(function () {
  const form = document.querySelector("form.import");
  if (!form) return;
  const bar = document.querySelector(".upload progress");
  const uploaded = document.querySelector(".upload .uploaded");
  const report = document.querySelector(".report");
  const outcome = report.querySelector(".outcome");
  const errors = report.querySelector(".row-errors");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const file = form.querySelector("#file").files[0];
    if (!file) return;
    const skip = form.querySelector("#skip_invalid").checked;
    const button = form.querySelector("button");
    button.disabled = true;
    report.hidden = true;
    bar.parentElement.hidden = false;
    bar.value = 0;
    const request = new XMLHttpRequest();
    request.open("POST", "/clients/import?skip_invalid=" + skip);
    request.setRequestHeader("Content-Type", "text/csv");
    request.setRequestHeader("X-CSRF-Token", form.dataset.csrf);
    request.upload.addEventListener("progress", (p) => {
      if (!p.lengthComputable) return;
      bar.max = p.total;
      bar.value = p.loaded;
      uploaded.textContent = Math.round((p.loaded * 100) / p.total) + " % uploaded";
    });
    request.addEventListener("loadend", () => {
      button.disabled = false;
      report.hidden = false;
      errors.tBodies[0].replaceChildren();
      let answer = {};
      try {
        answer = JSON.parse(request.responseText);
      } catch (e) {
        answer = {};
      }
      if (answer.error) {
        outcome.textContent = "Not imported: " + answer.error.message;
        errors.hidden = true;
        return;
      }
      if (request.status === 0 || answer.imported === undefined) {
        outcome.textContent = "The upload failed (" + (request.status || "no answer") + "); nothing may have been imported.";
        errors.hidden = true;
        return;
      }
      uploaded.textContent = "100 % uploaded";
      const bad = answer.error_count;
      outcome.textContent = request.status === 200
        ? "Imported " + answer.imported + " (" + answer.inserted + " new, " + answer.updated + " updated)" + (bad ? "; " + bad + " bad rows left out." : ".")
        : "Nothing imported: " + bad + (bad === 1 ? " row is" : " rows are") + " wrong. Fix them, or import the valid rows and report the others.";
      for (const e of answer.errors) {
        const row = errors.tBodies[0].insertRow();
        row.insertCell().textContent = e.line;
        row.insertCell().textContent = e.message;
      }
      errors.hidden = answer.errors.length === 0;
    });
    request.send(file);
  });
})();

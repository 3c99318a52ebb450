// The dashboard fills in its activity when the server had none ready, and follows its board's
// event stream: the progress bars of the scheduled, running and paused mailings move, new ones
// appear, deleted ones go. No reload, no other host.
(function () {
  // Before the tenant's first activity is read, the page has a placeholder: fetch it.
  const activity = document.querySelector("[data-activity]");
  if (activity && activity.querySelector(".reading")) {
    fetch(activity.dataset.activity)
      .then((answer) => (answer.ok ? answer.text() : Promise.reject(answer.status)))
      .then((html) => { activity.innerHTML = html; })
      .catch(() => {
        activity.querySelector(".reading").textContent = "Today's activity cannot be read now; reload the page to try again.";
      });
  }
  const board = document.querySelector("[data-board]");
  if (!board || !window.EventSource) return;
  const table = board.querySelector("table.board");
  const body = table.tBodies[0];
  const empty = board.querySelector(".board-empty");
  const events = new EventSource(board.dataset.board);
  // A row like the server's, for a mailing that appeared after the page was made.
  const newRow = (m) => {
    const row = document.createElement("tr");
    row.dataset.mailing = m.id;
    const link = document.createElement("a");
    link.href = "/mailings/" + m.id;
    link.textContent = m.id;
    row.insertCell().append(link);
    row.insertCell().textContent = m.channel;
    row.insertCell().className = "state";
    const cell = row.insertCell();
    const bar = document.createElement("progress");
    bar.setAttribute("aria-label", "mailing " + m.id + ": messages finished");
    const percent = document.createElement("span");
    percent.className = "percent";
    cell.append(bar, " ", percent);
    // Newest first, as the server lists them.
    const later = [...body.rows].find((r) => Number(r.dataset.mailing) < m.id);
    body.insertBefore(row, later || null);
    return row;
  };
  events.addEventListener("progress", (message) => {
    const update = JSON.parse(message.data);
    for (const m of update.mailings) {
      const row = body.querySelector('tr[data-mailing="' + m.id + '"]') || newRow(m);
      row.querySelector(".state").textContent = m.state;
      const bar = row.querySelector("progress");
      bar.max = m.total;
      bar.value = m.finished;
      bar.textContent = m.percent + " %";
      row.querySelector(".percent").textContent = m.percent + " %";
    }
    for (const id of update.gone) {
      const row = body.querySelector('tr[data-mailing="' + id + '"]');
      if (row) row.remove();
    }
    table.hidden = body.rows.length === 0;
    empty.hidden = body.rows.length > 0;
  });
  // The server's own "error" event (the session ended) carries data; a dropped connection
  // does not, and the browser reconnects by itself.
  events.addEventListener("error", (message) => {
    if (message.data) events.close();
  });
})();

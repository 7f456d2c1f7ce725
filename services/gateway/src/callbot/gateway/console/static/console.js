// The live page: applies the server's events (rendered, escaped HTML) to the
// cards of the calls in progress. Lines carry their ids, so an event that
// arrives twice (the snapshot and the stream overlap on reconnect) shows once.
"use strict";
(function () {
  const board = document.getElementById("live-calls");
  if (!board) return;
  const state = document.getElementById("live-state");
  const blank = document.getElementById("card-template");

  function parse(html) {
    const holder = document.createElement("template");
    holder.innerHTML = html;
    return holder.content;
  }

  function card(callId) {
    let found = document.getElementById("call-" + callId);
    if (!found) {
      found = blank.content.firstElementChild.cloneNode(true);
      found.id = "call-" + callId;
      found.dataset.call = callId;
      const link = found.querySelector("a");
      link.href = board.dataset.calls + "/" + encodeURIComponent(callId);
      link.textContent = callId;
      board.prepend(found);
    }
    return found;
  }

  function addLines(target, content) {
    const list = target.querySelector("ol.lines");
    for (const line of Array.from(content.querySelectorAll("li.line"))) {
      if (document.getElementById(line.id)) continue;
      const seq = Number(line.dataset.seq);
      const after = Array.from(list.children).find((item) => Number(item.dataset.seq) > seq);
      list.insertBefore(line, after || null);
    }
  }

  function apply(message) {
    if (message.card) {
      const fresh = parse(message.card).firstElementChild;
      const existing = document.getElementById(fresh.id);
      if (existing) {
        addLines(existing, fresh);
      } else {
        board.prepend(fresh);
      }
    }
    const target = card(message.call_id);
    if (message.lines) addLines(target, parse(message.lines));
    if (message.status && !target.classList.contains("completed")) {
      target.querySelector(".status").textContent = message.status;
    }
    if (message.final) target.classList.add("ended");
    if (message.completed) target.classList.add("completed");
  }

  const source = new EventSource(board.dataset.stream);
  source.onopen = () => { state.textContent = "live"; };
  source.onerror = () => { state.textContent = "reconnecting…"; };
  source.onmessage = (event) => apply(JSON.parse(event.data));
})();

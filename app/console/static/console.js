// termsync console: live progress of export builds and import jobs.
// Pages work without this script (a <noscript> refresh reloads them while something runs); with
// it, an element with data-poll="URL" asks URL for {state, label, detail, value, max, final}
// every data-poll-seconds, keeps its badge ([data-poll-badge]), bar ([data-poll-bar]) and label
// ([data-poll-label]) current, and reloads the page once the work has ended.
(function () {
  "use strict";

  function follow(element) {
    var url = element.getAttribute("data-poll");
    var every = Math.max(0.2, Number(element.getAttribute("data-poll-seconds")) || 1) * 1000;
    var badge = element.querySelector("[data-poll-badge]");
    var bar = element.querySelector("[data-poll-bar]");
    var label = element.querySelector("[data-poll-label]");
    var busy = false;
    var timer = window.setInterval(function () {
      if (busy) { return; }
      busy = true;
      window.fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
        .then(function (answer) { return answer.ok ? answer.json() : null; })
        .then(function (state) {
          busy = false;
          if (!state) { return; }
          if (badge) {
            badge.textContent = state.label;
            badge.className = "state state-" + state.state;
          }
          if (bar) { bar.max = state.max; bar.value = state.value; }
          if (label) { label.textContent = state.detail; }
          element.setAttribute("data-state", state.state);
          if (state.final) {
            window.clearInterval(timer);
            window.location.reload();
          }
        })
        .catch(function () { busy = false; });
    }, every);
  }

  document.documentElement.classList.add("js");
  Array.prototype.forEach.call(document.querySelectorAll("[data-poll]"), follow);
}());

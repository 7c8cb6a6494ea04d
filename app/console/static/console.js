// termsync console: live progress of export builds and import jobs.
// Pages work without this script (a <noscript> refresh reloads them while something runs); with
// it, an element with data-poll="URL" asks URL for {state, label, value, max, final} every
// data-poll-seconds, moves its <progress> and label, and reloads the page once the work ends.
(function () {
  "use strict";

  function follow(element) {
    var url = element.getAttribute("data-poll");
    var every = Math.max(0.2, Number(element.getAttribute("data-poll-seconds")) || 1) * 1000;
    var bar = element.querySelector("progress");
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
          if (bar) { bar.max = state.max; bar.value = state.value; }
          if (label) { label.textContent = state.label; }
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

// supervisor dashboard: the selection of rows on a listing (no inline code: the CSP forbids it).
// - "select all" ticks every row of the page; the count and the buttons follow the ticks;
// - the confirmation of a selected-rows action says how many tasks it will touch;
// - a live refresh of the listing waits while rows are ticked (it would clear the ticks).
(function () {
  "use strict";

  function boxes() {
    return Array.prototype.slice.call(document.querySelectorAll('#tasks input[name="ids"]'));
  }

  function update() {
    var ticked = boxes().filter(function (b) { return b.checked; }).length;
    var count = document.getElementById("selected-count");
    if (count) { count.textContent = ticked + " selected"; }
    var retry = document.getElementById("retry-selected");
    var del = document.getElementById("delete-selected");
    var noun = ticked === 1 ? "task" : "tasks";
    if (retry) {
      retry.disabled = ticked === 0;
      retry.setAttribute("hx-confirm", "Retry the " + ticked + " selected " + noun + "?");
    }
    if (del) {
      del.disabled = ticked === 0;
      del.setAttribute("hx-confirm", "Delete the " + ticked + " selected " + noun + "? This cannot be undone.");
    }
    var all = document.getElementById("select-all");
    if (all) {
      var n = boxes().length;
      all.checked = n > 0 && ticked === n;
      all.indeterminate = ticked > 0 && ticked < n;
    }
  }

  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target && target.id === "select-all") {
      boxes().forEach(function (b) { b.checked = target.checked; });
    }
    if (target && (target.id === "select-all" || target.name === "ids")) { update(); }
  });

  document.addEventListener("htmx:beforeRequest", function (event) {
    var elt = event.detail && event.detail.elt;
    if (elt && elt.hasAttribute("data-live") && boxes().some(function (b) { return b.checked; })) {
      event.preventDefault();
    }
  });

  document.addEventListener("htmx:afterSwap", update);
  document.addEventListener("DOMContentLoaded", update);
})();

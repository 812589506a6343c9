// jobhook dashboard: ask before the forms that say data-confirm, and
// reload pages that say data-refresh="seconds" while nobody is using them.
"use strict";
document.addEventListener("submit", function (e) {
  var msg = e.target.getAttribute("data-confirm");
  if (msg && !window.confirm(msg)) { e.preventDefault(); }
});
(function () {
  var every = parseInt(document.body.getAttribute("data-refresh") || "0", 10);
  if (!every) { return; }
  var last = Date.now();
  ["keydown", "mousedown", "focusin", "input"].forEach(function (t) {
    document.addEventListener(t, function () { last = Date.now(); }, true);
  });
  setInterval(function () {
    if (document.visibilityState === "visible" && Date.now() - last >= every * 1000) { location.reload(); }
  }, every * 1000);
})();

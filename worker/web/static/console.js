// The one script of the console: the "select all" checkbox of the clock events table. Without it every row can
// still be ticked by hand.
document.addEventListener("change", function (event) {
  var all = event.target;
  if (!all.matches || !all.matches("input[data-select-all]")) { return; }
  var boxes = document.querySelectorAll("input[name='" + all.dataset.selectAll + "']:not(:disabled)");
  boxes.forEach(function (box) { box.checked = all.checked; });
});

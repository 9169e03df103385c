// qbench: sortable tables (click or Enter on a header). The leaderboard page inlines this file; the site loads it as assets/site.js (script-src 'self', no inline script).
(function () {
  "use strict";
  function sortKey(cell) {
    return cell.hasAttribute("data-v") ? cell.getAttribute("data-v") : cell.textContent.trim();
  }
  function sortBy(table, headers, th, index) {
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    Array.prototype.forEach.call(headers, function (other) { other.setAttribute("aria-sort", "none"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var numeric = th.getAttribute("data-type") === "number";
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = sortKey(a.cells[index]), y = sortKey(b.cells[index]);
      if (numeric) {
        var fx = x === "" ? NaN : Number(x), fy = y === "" ? NaN : Number(y);
        if (isNaN(fx) || isNaN(fy)) { return isNaN(fx) - isNaN(fy); }
        return ascending ? fx - fy : fy - fx;
      }
      return ascending ? x.localeCompare(y) : y.localeCompare(x);
    });
    rows.forEach(function (row) { body.appendChild(row); });
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    var headers = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(headers, function (th, index) {
      th.tabIndex = 0;
      th.addEventListener("click", function () { sortBy(table, headers, th, index); });
      th.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") { event.preventDefault(); sortBy(table, headers, th, index); }
      });
    });
  });
})();

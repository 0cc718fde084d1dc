// fieldsync console keyboard shortcuts (键盘快捷键). Served same-origin from
// /console/static/console.js; the Content-Security-Policy allows no other script and no
// inline script. Every page works without this file: the shortcuts only press the links
// and buttons that are already on the page.
//
//   a      approve (通过), only when the approve button is enabled
//   n / j  next item: on a submission page the next visit of the same filtered queue;
//          on the queue, move the selection down (k up, Enter or o opens it)
//   r      focus the return form (退回原因)
//   ?      show or hide the shortcut help
(function () {
  "use strict";

  function typing(target) {
    if (!target || !target.tagName) {
      return false;
    }
    var tag = target.tagName.toLowerCase();
    return tag === "input" || tag === "textarea" || tag === "select" || target.isContentEditable;
  }

  function toggleHelp() {
    var help = document.getElementById("shortcut-help");
    if (help) {
      help.hidden = !help.hidden;
    }
  }

  var selected = -1;
  function queueRows() {
    return Array.prototype.slice.call(document.querySelectorAll("tr[data-visit-href]"));
  }
  function select(index) {
    var rows = queueRows();
    if (rows.length === 0) {
      return;
    }
    selected = Math.max(0, Math.min(rows.length - 1, index));
    rows.forEach(function (row, at) {
      row.classList.toggle("selected", at === selected);
    });
    rows[selected].scrollIntoView({ block: "nearest" });
  }

  function focusReturnForm() {
    var start = document.getElementById("return-reasons");
    if (!start) {
      return false;
    }
    start.scrollIntoView({ block: "center" });
    var first = start.querySelector("input");
    (first || start).focus();
    return true;
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) {
      return;
    }
    var key = event.key;
    if (key === "?") {
      toggleHelp();
      event.preventDefault();
      return;
    }
    if (key === "Escape") {
      var help = document.getElementById("shortcut-help");
      if (help) {
        help.hidden = true;
      }
      return;
    }
    if (key === "a") {
      var approve = document.getElementById("approve-button");
      if (approve && !approve.disabled) {
        event.preventDefault();
        approve.click();
      }
      return;
    }
    if (key === "r") {
      if (focusReturnForm()) {
        event.preventDefault();
      }
      return;
    }
    if (key === "n" || key === "j") {
      var next = document.getElementById("next-item");
      if (next && next.href) {
        event.preventDefault();
        window.location.assign(next.href);
        return;
      }
      if (queueRows().length > 0) {
        event.preventDefault();
        select(selected + 1);
      }
      return;
    }
    if (key === "k" && queueRows().length > 0) {
      event.preventDefault();
      select(selected - 1);
      return;
    }
    if ((key === "Enter" || key === "o") && selected >= 0) {
      var row = queueRows()[selected];
      if (row) {
        event.preventDefault();
        window.location.assign(row.getAttribute("data-visit-href"));
      }
    }
  });

  // The hint is hidden in the markup so that a browser without scripts never advertises
  // shortcuts that cannot work.
  document.addEventListener("DOMContentLoaded", function () {
    var hints = document.querySelectorAll(".shortcut-hint");
    Array.prototype.forEach.call(hints, function (hint) {
      hint.hidden = false;
    });
    document.documentElement.setAttribute("data-shortcuts", "on");
  });
})();

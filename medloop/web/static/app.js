// Small progressive enhancements; every page works without JavaScript.
(function () {
  "use strict";
  document.querySelectorAll("select[data-autosubmit]").forEach(function (el) {
    el.addEventListener("change", function () { el.form.submit(); });
  });
  // A review needs a rationale: say so before the round trip.
  document.querySelectorAll("form.review").forEach(function (form) {
    form.addEventListener("submit", function (ev) {
      var text = form.querySelector("textarea[name=rationale]");
      if (text && text.value.trim().length < 10) {
        ev.preventDefault();
        text.setCustomValidity("Write at least 10 characters: why?");
        text.reportValidity();
      } else if (text) {
        text.setCustomValidity("");
      }
    });
  });
})();

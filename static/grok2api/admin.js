/* Small behaviours of grok2api's admin templates, kept out of inline handlers (the
   Content-Security-Policy allows scripts from this origin only). */
(function () {
  "use strict";
  // <button data-confirm="question"> / <input type=submit data-confirm=…>: ask before submitting.
  document.addEventListener("click", function (event) {
    var target = event.target.closest ? event.target.closest("[data-confirm]") : null;
    if (target && !window.confirm(target.getAttribute("data-confirm"))) event.preventDefault();
  });

  // Periodic task form (django-celery-beat): show what the chosen crontab means under the field.
  document.addEventListener("DOMContentLoaded", function () {
    var data = document.getElementById("readable-crontabs");
    var select = document.getElementById("id_crontab");
    if (!data || !select) return;
    var readable = JSON.parse(data.textContent);
    var help = document.querySelector(".field-crontab .help");
    var original = help ? help.textContent : "";
    var translation = document.querySelector(".field-crontab_translation");
    if (translation) translation.hidden = true;
    select.addEventListener("change", function () {
      if (!help) return;
      help.replaceChildren(document.createTextNode(original), document.createElement("br"),
        document.createTextNode("Translation: " + (readable[select.value] || "")));
    });
  });
})();

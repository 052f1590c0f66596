// The integration setup page: "Test connection" posts the form (nothing is saved) and keeps the
// token of a successful test in the form, so saving marks the integration connected; "Copy"
// copies the webhook URL. Loaded from our origin (the CSP allows no inline script).
(function () {
  "use strict";

  function labelOf(form, name) {
    var label = form.querySelector('label[for="id_' + name + '"]');
    return label ? label.textContent.replace(/:\s*$/, "") : name;
  }

  function show(out, result, form) {
    out.textContent = result.message || "";
    out.className = "cs-test-result " + (result.ok ? "cs-ok" : "cs-fail");
    if (result.errors) {
      var list = document.createElement("ul");
      Object.keys(result.errors).forEach(function (name) {
        var item = document.createElement("li");
        item.textContent = labelOf(form, name) + ": " + result.errors[name].join(" ");
        list.appendChild(item);
      });
      out.appendChild(list);
    }
  }

  function testConnection(button) {
    var form = button.closest("form");
    var out = document.getElementById("cs-test-result");
    var check = form.querySelector('input[name="connection_check"]');
    var data = new FormData(form);
    data.delete("connection_check");
    button.disabled = true;
    out.className = "cs-test-result";
    out.textContent = "Testing…";
    fetch(button.getAttribute("data-url"), { method: "POST", body: data, credentials: "same-origin" })
      .then(function (response) {
        return response.json().catch(function () {
          return { ok: false, message: "ChurnShield answered HTTP " + response.status + "." };
        });
      })
      .then(function (result) {
        show(out, result, form);
        if (check) check.value = result.ok ? result.token || "" : "";
      })
      .catch(function () {
        show(out, { ok: false, message: "Could not reach ChurnShield to run the test." }, form);
      })
      .then(function () {
        button.disabled = false;
      });
  }

  function copyUrl(button) {
    var input = document.getElementById(button.getAttribute("data-copy"));
    var out = document.getElementById("cs-copy-result");
    function done(ok) {
      out.textContent = ok ? "Copied." : "Select the URL and copy it (Ctrl+C).";
    }
    function fallback() {
      input.select();
      try {
        done(document.execCommand("copy"));
      } catch (error) {
        done(false);
      }
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(input.value).then(function () { done(true); }, fallback);
    } else {
      fallback();
    }
  }

  document.addEventListener("click", function (event) {
    var target = event.target;
    if (!(target instanceof Element)) return;
    if (target.id === "cs-test-connection") testConnection(target);
    if (target.id === "cs-copy-webhook") copyUrl(target);
  });
})();

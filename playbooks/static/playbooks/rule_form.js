// The trigger-rule form: show the chosen kind's settings, each condition row's fitting value input
// and operators, add and remove rows, and a live count of matching customers. Without this script
// every input shows and the server ignores the ones that do not apply.
(function () {
  "use strict";

  function ready(fn) {
    if (document.readyState !== "loading") fn();
    else document.addEventListener("DOMContentLoaded", fn);
  }

  ready(function () {
    var form = document.querySelector("#triggerrule_form");
    var kind = form && form.querySelector("[data-rule-kind]");
    var specsNode = document.getElementById("rule-fields");
    if (!form || !kind || !specsNode) return;
    var specs = JSON.parse(specsNode.textContent);

    function showKind() {
      form.querySelectorAll("fieldset.rule-params").forEach(function (fieldset) {
        fieldset.hidden = !fieldset.classList.contains("rule-kind-" + kind.value);
      });
    }

    function showRow(row) {
      var field = row.querySelector("select[name$='-field']");
      var op = row.querySelector("select[name$='-op']");
      var spec = specs[field.value];
      row.querySelectorAll(".rule-value").forEach(function (box) {
        box.hidden = !spec || box.dataset.value !== spec.value;
      });
      Array.prototype.forEach.call(op.options, function (option) {
        option.hidden = option.disabled = !!spec && spec.ops.indexOf(option.value) < 0;
      });
      if (spec && spec.ops.indexOf(op.value) < 0) op.value = spec.ops[0];
      op.hidden = !spec;
    }

    var body = form.querySelector("[data-rule-rows]");
    var template = form.querySelector("[data-rule-row-template]");
    var total = form.querySelector("#id_segment-TOTAL_FORMS");
    var maximum = parseInt(form.querySelector("#id_segment-MAX_NUM_FORMS").value, 10);
    var add = form.querySelector("[data-rule-add]");

    function renumber() {
      var n = 0;
      body.querySelectorAll("[data-rule-row]").forEach(function (row) {
        if (!row.hidden) row.querySelector(".rule-number").textContent = String(++n);
      });
      add.hidden = parseInt(total.value, 10) >= maximum;
    }

    function wire(row) {
      var remove = row.querySelector("input[name$='-DELETE']");
      var button = document.createElement("button");
      button.type = "button";
      button.className = "button rule-remove";
      button.textContent = "Remove";
      button.addEventListener("click", function () {
        remove.checked = true;
        row.hidden = true;
        renumber();
        schedule();
      });
      remove.hidden = true;
      remove.parentNode.appendChild(button);
      row.querySelector("select[name$='-field']").addEventListener("change", function () {
        showRow(row);
      });
      showRow(row);
    }

    body.querySelectorAll("[data-rule-row]").forEach(wire);
    add.addEventListener("click", function () {
      var index = parseInt(total.value, 10);
      var holder = document.createElement("tbody");
      holder.innerHTML = template.innerHTML.replace(/__prefix__/g, String(index));
      var row = holder.querySelector("[data-rule-row]");
      body.appendChild(row);
      total.value = String(index + 1);
      wire(row);
      renumber();
      row.querySelector("select[name$='-field']").focus();
    });
    renumber();

    // The live count: the form as it stands, posted to the preview endpoint (writes nothing).
    var preview = document.querySelector("[data-rule-preview]");
    var text = preview && preview.querySelector("[data-rule-preview-text]");
    var timer = null;
    var sequence = 0;
    function refresh() {
      var mine = ++sequence;
      var data = new FormData(form);
      fetch(preview.dataset.rulePreview, {
        method: "POST",
        body: data,
        credentials: "same-origin",
        headers: { "X-Requested-With": "fetch" },
      })
        .then(function (response) {
          return response.json().then(function (json) {
            return { ok: response.ok, json: json };
          });
        })
        .then(function (answer) {
          if (mine !== sequence) return;
          text.textContent = answer.ok
            ? answer.json.text
            : "Finish the rule to see how many customers it matches (Save shows what is missing).";
        })
        .catch(function () {
          if (mine === sequence) text.textContent = "Could not count the matches just now.";
        });
    }
    function schedule() {
      if (!preview) return;
      clearTimeout(timer);
      timer = setTimeout(refresh, 400);
    }

    kind.addEventListener("change", showKind);
    showKind();
    form.addEventListener("change", schedule);
    form.addEventListener("input", schedule);
  });
})();

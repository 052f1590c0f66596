/* The playbook step editor: show each step's own fields, add, remove and reorder steps, keep the
   branch targets in step with the keys, and dry-run the unsaved steps. Without this script the
   page still edits the existing steps (every field posts; the order field orders them). */
"use strict";
(function () {
  function init(editor) {
    const list = editor.querySelector("[data-step-list]");
    const template = document.getElementById("pb-step-template");
    const total = editor.querySelector("input[name='steps-TOTAL_FORMS']");
    const cards = () => Array.from(list.querySelectorAll("[data-step]"));
    const live = () => cards().filter((card) => !card.classList.contains("pb-step-removed"));

    function showType(card) {
      const kind = card.querySelector("select[name$='-type']").value;
      card.querySelectorAll("[data-types]").forEach((row) => {
        row.hidden = !row.dataset.types.split(" ").includes(kind);
      });
    }

    function refreshKeys() {
      const keys = live().map((card) => card.querySelector("input[name$='-key']").value.trim()).filter(Boolean);
      list.querySelectorAll("select[data-field='next'], select[data-field='then'], select[data-field='else']")
        .forEach((select) => {
          const current = select.value;
          Array.from(select.options).slice(2).forEach((option) => option.remove());
          keys.forEach((key) => select.add(new Option("step " + key, key)));
          select.value = keys.includes(current) || current === "end" ? current : "";
        });
    }

    function renumber() {
      let position = 0;
      cards().forEach((card) => {
        const order = card.querySelector("input[name$='-ORDER']");
        if (card.classList.contains("pb-step-removed")) return;
        position += 1;
        card.querySelector("[data-step-number]").textContent = position;
        if (order) order.value = position;
      });
    }

    function unusedKey() {
      const taken = new Set(cards().map((card) => card.querySelector("input[name$='-key']").value));
      let n = cards().length + 1;
      while (taken.has("step" + n)) n += 1;
      return "step" + n;
    }

    function wire(card) {
      card.querySelectorAll("[data-move]").forEach((button) => { button.hidden = false; });
      const order = card.querySelector(".pb-order");
      if (order) order.hidden = true;
      card.querySelector("select[name$='-type']").addEventListener("change", () => showType(card));
      card.querySelector("input[name$='-key']").addEventListener("input", refreshKeys);
      const remove = card.querySelector("input[name$='-DELETE']");
      if (remove) {
        remove.addEventListener("change", () => {
          card.classList.toggle("pb-step-removed", remove.checked);
          renumber();
          refreshKeys();
        });
      }
      card.querySelector("[data-move='up']").addEventListener("click", () => {
        const before = card.previousElementSibling;
        if (before) list.insertBefore(card, before);
        renumber();
      });
      card.querySelector("[data-move='down']").addEventListener("click", () => {
        const after = card.nextElementSibling;
        if (after) list.insertBefore(after, card);
        renumber();
      });
      showType(card);
    }

    cards().forEach(wire);
    renumber();
    const add = editor.querySelector("[data-add-step]");
    add.hidden = false;
    add.addEventListener("click", () => {
      const index = Number(total.value);
      const holder = document.createElement("div");
      holder.innerHTML = template.innerHTML.replace(/__prefix__/g, String(index));
      const card = holder.firstElementChild;
      list.appendChild(card);
      total.value = String(index + 1);
      card.querySelector("input[name$='-key']").value = unusedKey();
      wire(card);
      renumber();
      refreshKeys();
      card.querySelector("select[name$='-type']").focus();
    });

    const dry = editor.querySelector("[data-dry-run-url]");
    if (dry) {
      dry.hidden = false;
      const output = dry.querySelector("[data-dry-run-output]");
      dry.querySelector("[data-dry-run]").addEventListener("click", async () => {
        output.textContent = "Running…";
        const response = await fetch(dry.dataset.dryRunUrl, {
          method: "POST", body: new FormData(editor.closest("form")), credentials: "same-origin",
        });
        const page = new DOMParser().parseFromString(await response.text(), "text/html");
        const result = page.querySelector("[data-dry-run-result]");
        output.replaceChildren(result ? document.importNode(result, true) : document.createTextNode(
          "The dry run failed (" + response.status + ")."));
      });
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("[data-step-editor]").forEach(init);
  });
})();

// Keyboard-first review: keys click the app's own buttons, so every path is the mouse path too.
// Inert while the reviewer types in a text field; Esc leaves the field.
(() => {
  if (window.__labelerShortcuts) return;
  window.__labelerShortcuts = true;
  const TEXT_INPUTS = new Set(["text", "search", "email", "number", "password", "url", "tel", ""]);
  const typing = (el) => {
    if (!el || el === document.body) return false;
    if (el.isContentEditable || el.tagName === "TEXTAREA" || el.tagName === "SELECT") return true;
    return el.tagName === "INPUT" && TEXT_INPUTS.has((el.getAttribute("type") || "").toLowerCase());
  };
  const visible = (el) => !!el && el.offsetParent !== null;
  const press = (id) => {
    const el = document.getElementById(id);
    const btn = el && (el.tagName === "BUTTON" ? el : el.querySelector("button"));
    if (btn && !btn.disabled) { btn.click(); return true; }
    return false;
  };
  const KEYS = { Enter: "btn-accept", s: "btn-skip", S: "btn-skip", u: "btn-undo", U: "btn-undo" };
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.isComposing || e.repeat) return;
    if (typing(e.target)) {
      if (e.key === "Escape") e.target.blur();
      // after choosing a category or entering a name, hand the keyboard back to the shortcuts
      if (e.key === "Enter" && e.target.closest("#category-search, #reviewer-name")) {
        const field = e.target;
        setTimeout(() => field.blur(), 60);
      }
      return;
    }
    if (!visible(document.getElementById("review-card"))) return;   // another tab is open
    if (e.key === "/") {
      const search = document.querySelector("#category-search input");
      if (search) { e.preventDefault(); search.focus(); }
      return;
    }
    const id = /^[1-5]$/.test(e.key) ? "btn-pick-" + e.key : KEYS[e.key];
    if (id && press(id)) e.preventDefault();
  }, true);
  // A click on a top-5 row is the same as its digit key; a heatmap chip asks for that category.
  document.addEventListener("click", (e) => {
    if (!e.target.closest) return;
    const row = e.target.closest("#top5 [data-pick]");
    if (row) { press("btn-pick-" + row.dataset.pick); return; }
    const chip = e.target.closest("#heatmaps [data-heat]");
    const box = document.querySelector("#heat-request textarea, #heat-request input");
    if (chip && box) {
      chip.parentElement.querySelectorAll("[data-heat]").forEach((c) => c.classList.toggle("on", c === chip));
      box.value = chip.dataset.heat;
      box.dispatchEvent(new Event("input", { bubbles: true }));
      setTimeout(() => press("btn-heat"), 0);
    }
  });
})();

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
  // The text model's words: T shows / hides those that pushed against the chosen category
  // (a class on <html>, so it outlives card updates; remembered by the browser).
  const AGAINST = "labeler-x-against";
  const against = (on) => {
    document.documentElement.classList.toggle("x-against", on);
    try { localStorage.setItem(AGAINST, on ? "1" : ""); } catch (err) { /* private mode */ }
  };
  try { if (localStorage.getItem(AGAINST)) document.documentElement.classList.add("x-against"); } catch (err) { /* */ }
  const toggleAgainst = () => against(!document.documentElement.classList.contains("x-against"));
  // Tints and summary of the rank-th explained category (CSS: .xr-N on the explanation block).
  const showRank = (block, rank) => {
    if (!block || !(rank >= 1 && rank <= 5)) return;
    for (let r = 1; r <= 5; r++) block.classList.toggle("xr-" + r, r === rank);
  };
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
    // D: the description box takes the keys (arrows, Page Up/Down scroll it); Esc gives them back
    const desc = document.querySelector("#review-card .product-desc");
    if (e.key === "Escape" && e.target === desc) { desc.blur(); return; }
    if ((e.key === "d" || e.key === "D") && desc) { e.preventDefault(); desc.focus(); return; }
    if (e.key === "/") {
      const search = document.querySelector("#category-search input");
      if (search) { e.preventDefault(); search.focus(); }
      return;
    }
    if (e.key === "t" || e.key === "T") { toggleAgainst(); e.preventDefault(); return; }
    const id = /^[1-5]$/.test(e.key) ? "btn-pick-" + e.key : KEYS[e.key];
    // no product on screen: nothing to accept, pick or skip (U still brings the last one back)
    if (id && id !== "btn-undo" && !document.querySelector("#review-card .card[data-product-id]")) return;
    if (id && press(id)) e.preventDefault();
  }, true);
  // A card shown before its text explanation was computed gets it later, inside the heatmap
  // output, keyed by the card: copied into the card only if that card is still on screen.
  const applyLate = (late) => {
    late.dataset.applied = "1";
    const card = document.querySelector("#review-card .card.xexp");
    if (!card || card.dataset.key !== late.dataset.key) return;
    const copy = (target, source) => {
      const el = card.querySelector(target);
      const src = late.querySelector(source);
      if (el && src && src.innerHTML) el.innerHTML = src.innerHTML;
    };
    copy(".product-title", '[data-part="title"]');
    copy(".product-desc", '[data-part="desc"]');
    copy(".xsum", ".xsum");
    card.dataset.xcodes = late.dataset.xcodes;
  };
  new MutationObserver(() => {
    const heat = document.getElementById("heatmaps");
    if (heat) heat.querySelectorAll(".x-late:not([data-applied])").forEach(applyLate);
  }).observe(document.documentElement, { childList: true, subtree: true });
  // A click on a top-5 row is the same as its digit key; a heatmap chip asks for that category.
  document.addEventListener("click", (e) => {
    if (!e.target.closest) return;
    const row = e.target.closest("#top5 [data-pick]");
    if (row) { press("btn-pick-" + row.dataset.pick); return; }
    if (e.target.closest(".x-toggle")) { toggleAgainst(); return; }
    const xchip = e.target.closest(".xexp [data-xrank]");
    if (xchip) {
      xchip.parentElement.querySelectorAll("[data-xrank]").forEach((c) => c.classList.toggle("on", c === xchip));
      showRank(xchip.closest(".xexp"), Number(xchip.dataset.xrank));
      return;
    }
    const chip = e.target.closest("#heatmaps [data-heat]");
    if (chip) {      // the card's words follow the heatmaps' category
      const card = document.querySelector("#review-card .xexp");
      const codes = card ? (card.dataset.xcodes || "").split(" ") : [];
      showRank(card, codes.indexOf(chip.dataset.heat) + 1);
    }
    const box = document.querySelector("#heat-request textarea, #heat-request input");
    if (chip && box) {
      chip.parentElement.querySelectorAll("[data-heat]").forEach((c) => c.classList.toggle("on", c === chip));
      box.value = chip.dataset.heat;
      box.dispatchEvent(new Event("input", { bubbles: true }));
      setTimeout(() => press("btn-heat"), 0);
    }
  });
})();

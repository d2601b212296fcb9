// Grid tab from the keyboard or the mouse: Enter in the reviewer's name opens the first page (and
// leaves the field, so the keys below work at once); a click on a tile, or the arrow keys and
// Space, marks a product wrong (by ticking its box in the "Wrong ones" list, so the mouse path is
// the same); Enter accepts the page except the marked ones. Each marked product then opens its
// card (in #grid-page .grid-fix): 1-9 (or a click on a row) choose among the nine likeliest
// other categories, a letter (or a click) one of the others, each shown with its key (the page
// says which: data-letter), / searches every category, Q sends it back to the queue. Inert on
// other tabs and while typing in a field.
(() => {
  if (window.__labelerGrid) return;
  window.__labelerGrid = true;
  const TEXT_INPUTS = new Set(["text", "search", "email", "number", "password", "url", "tel", ""]);
  const typing = (el) => {
    if (!el || el === document.body) return false;
    if (el.isContentEditable || el.tagName === "TEXTAREA" || el.tagName === "SELECT") return true;
    return el.tagName === "INPUT" && TEXT_INPUTS.has((el.getAttribute("type") || "").toLowerCase());
  };
  let cursor = 0;
  let shown = null;            // the first tile's product: a new page puts the cursor back on tile 1
  const tiles = () => Array.from(document.querySelectorAll("#grid-page .grid-tile"));
  const boxes = () => Array.from(document.querySelectorAll("#grid-marked input[type=checkbox]"));
  const paint = () => {
    const ts = tiles();
    const first = ts.length ? ts[0].dataset.product : null;
    if (first !== shown) { shown = first; cursor = 0; }
    const bs = boxes();
    ts.forEach((t, i) => {
      t.classList.toggle("grid-cursor", i === cursor);
      t.classList.toggle("grid-marked", !!(bs[i] && bs[i].checked));
    });
  };
  const toggle = (i) => {
    const b = boxes()[i];
    if (b) b.click();
    setTimeout(paint, 0);
  };
  const columns = (ts) => {
    if (!ts.length) return 1;
    const top = ts[0].offsetTop;
    const n = ts.findIndex((t) => t.offsetTop !== top);
    return n === -1 ? ts.length : n;
  };
  const press = (id) => {
    const el = document.getElementById(id);
    const btn = el && (el.tagName === "BUTTON" ? el : el.querySelector("button"));
    if (btn && !btn.disabled) { btn.click(); return true; }
    return false;
  };
  const fixing = () => document.querySelector("#grid-page .grid-fix .card[data-product-id]");
  document.addEventListener("click", (e) => {
    const row = e.target.closest && e.target.closest("#grid-page .grid-fix [data-pick]");
    if (row) { press("grid-pick-" + row.dataset.pick); return; }
    const tile = e.target.closest && e.target.closest("#grid-page .grid-tile");
    if (!tile) return;
    paint();
    cursor = tiles().indexOf(tile);
    toggle(cursor);
  });
  document.addEventListener("keydown", (e) => {
    const page = document.getElementById("grid-page");
    if (!page || page.offsetParent === null || e.ctrlKey || e.metaKey || e.altKey) return;
    if (typing(e.target)) {
      // a category chosen in the card's search, or the reviewer's name entered (the first page
      // opens): the keyboard goes back to the shortcuts
      if (e.key === "Enter" && e.target.closest("#grid-fix-category, #grid-reviewer")) {
        const field = e.target;
        setTimeout(() => field.blur(), 60);
      }
      return;
    }
    if (fixing()) {
      const chip = /^[a-z]$/.test(e.key) &&
        document.querySelector(`#grid-page .grid-fix [data-letter="${e.key}"]`);
      if (/^[1-9]$/.test(e.key)) press("grid-pick-" + e.key);
      else if (chip) press("grid-pick-" + chip.dataset.pick);
      else if (e.key === "/") { const s = document.querySelector("#grid-fix-category input"); if (s) s.focus(); }
      else if (e.key === "q" || e.key === "Q") press("grid-fix-queue");
      else return;
      e.preventDefault();
      return;
    }
    const ts = tiles();
    if (!ts.length) return;
    paint();
    const cols = columns(ts);
    const moves = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: cols, ArrowUp: -cols };
    if (e.key in moves) {
      cursor = Math.min(ts.length - 1, Math.max(0, cursor + moves[e.key]));
    } else if (e.key === " ") {
      toggle(cursor);
    } else if (e.key === "Enter") {
      const btn = document.querySelector("#grid-accept");
      const b = btn && (btn.tagName === "BUTTON" ? btn : btn.querySelector("button"));
      if (b && !b.disabled) b.click();
    } else {
      return;
    }
    e.preventDefault();
    paint();
  });
})();

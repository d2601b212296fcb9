// A review card arrives as one HTML output (labeler/card_pack.py): its top-5, side panel and
// heatmaps ride in <script type="text/html" data-slot> parts (raw text) that this script parses
// into their columns, in the same task as the card, before the browser paints. The heatmaps that
// come later (a hidden carrier) are shown only while their card is on screen.
(() => {
  if (window.__labelerCardPack) return;
  window.__labelerCardPack = true;
  let sent = 0;
  const afterPaint = (fn) => requestAnimationFrame(() => setTimeout(fn, 0));
  const slot = (name) => document.querySelector(`[data-slot-target="${name}"]`);
  const type = (selector, value) => {       // a hidden Gradio box: set it as typing would
    const box = document.querySelector(`${selector} textarea, ${selector} input`);
    if (!box) return;
    box.value = value;
    box.dispatchEvent(new Event("input", { bubbles: true }));
  };
  const onCard = (pack) => {
    pack.dataset.done = "1";
    pack.querySelectorAll(":scope > script[data-slot]").forEach((part) => {
      const el = slot(part.dataset.slot);
      if (el) el.innerHTML = part.textContent;
    });
    // the comment box and the heatmap request wait for the card's first paint: each sets off
    // Gradio's own updates (the request, a whole event), which would otherwise delay it
    const clear = !!pack.dataset.clearComment;
    const token = pack.dataset.heatToken ? `${pack.dataset.heatToken}#${++sent}` : "";
    if (clear || token) afterPaint(() => {
      if (clear) type("#comment", "");
      if (token) type("#heat-token", token);
    });
  };
  const onHeat = (part) => {
    part.dataset.done = "1";
    const pack = document.querySelector("#review-card .card-pack");
    const el = slot("heat");
    if (pack && el && pack.dataset.key === part.dataset.for) el.innerHTML = part.textContent;   // else its card is gone
  };
  // Gradio morphs an HTML output's old DOM into the new one: a new card changes the pack's
  // attributes (its key, the done mark dropped) rather than always adding nodes.
  new MutationObserver(() => {
    document.querySelectorAll("#review-card .card-pack:not([data-done])").forEach(onCard);
    document.querySelectorAll("#heat-carrier .heat-for:not([data-done])").forEach(onHeat);
  }).observe(document.documentElement,
             { childList: true, subtree: true, attributes: true, attributeFilter: ["data-key", "data-done", "data-n"] });
})();

// One token per browser tab, so the same reviewer in two tabs holds two products. The token is
// kept in sessionStorage: a reload resumes the tab's own product. But a duplicated tab (Chrome's
// "Duplicate", or a tab restored twice) starts with a copy of sessionStorage, hence the same
// token. So at load a tab asks the others, on a BroadcastChannel of this origin, whether its
// token is already held: a live tab holding it answers, and the newcomer takes a fresh token.
// Two tabs asking for the same token at once: the one whose page load id is smaller keeps it
// (whichever of the two heard the other's question). An answer that comes after the wait (a tab
// still loading its page answers late) makes this tab reload with a fresh token.
// window.labelerTab() -> Promise of this tab's token (the page load's event awaits it).
(() => {
  if (window.labelerTab) return;
  const KEY = "labeler-tab";
  const WAIT_MS = 200;       // a live tab answers within a few ms; this is only paid on a reload
  const fresh = () => Date.now().toString(36) + "-" + Math.random().toString(36).slice(2, 12);
  const stored = () => { try { return sessionStorage.getItem(KEY); } catch (e) { return null; } };
  const keep = (t) => { try { sessionStorage.setItem(KEY, t); } catch (e) { /* private mode */ } };
  const load = fresh();      // this page load's id: answers go to it, and it breaks ties
  let held = null;           // the token this tab holds (it answers for it)
  let asking = null;         // the token it is asking about
  let taken = false;
  let channel = null;
  try { channel = new BroadcastChannel("labeler-tabs"); } catch (e) { /* an old browser: no check */ }
  if (channel) {
    channel.onmessage = ({ data }) => {
      if (!data) return;
      if (data.ask && data.from !== load) {
        if (data.ask === held || (data.ask === asking && load < data.from)) {
          channel.postMessage({ taken: data.ask, to: data.from });
        } else if (data.ask === asking) {
          taken = true;       // another load asks for it too and wins the tie: leave it to that one
        }
      } else if (data.taken && data.to === load && data.taken === asking) {
        taken = true;
      } else if (data.taken && data.to === load && data.taken === held) {
        // the answer came after this tab had claimed the token (a page still loading answers
        // late): take a fresh token and start over with it, so the two tabs part ways anyway
        held = null;
        keep(fresh());
        location.reload();
      }
    };
  }
  const claim = (t) => { held = t; asking = null; keep(t); return t; };
  let token = null;
  window.labelerTab = () => {
    if (token) return token;
    const t = stored();
    if (!t || !channel) { token = Promise.resolve(claim(t || fresh())); return token; }
    asking = t;
    channel.postMessage({ ask: t, from: load });
    token = new Promise((resolve) => setTimeout(() => resolve(claim(taken ? fresh() : t)), WAIT_MS));
    return token;
  };
  window.labelerTab();
})();

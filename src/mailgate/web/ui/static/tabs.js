// Mailgate web UI: tabs, as the WAI-ARIA Authoring Practices' tabs pattern describes them
// (https://www.w3.org/WAI/ARIA/apg/patterns/tabs/), with automatic activation.
//
// Markup: <nav data-tabs> holding links, each naming its panel (an element on the page) in
// data-panel; the server marks the open one with data-selected. Without this script the
// links jump to panels that are all shown. With it the nav becomes a tablist, the links its
// tabs (one in the Tab order: the selected one; Left/Right, Home and End move between them)
// and only the selected panel is shown. The choice is kept in the address (the link's own
// URL, e.g. ?stage=test, replaces the current entry), so a reload opens the same tab; a
// fragment naming a panel (#stage-test) opens that one.
"use strict";

(function () {
  function setUp(list) {
    const tabs = [...list.querySelectorAll(":scope > a[data-panel]")];
    const panels = tabs.map((tab) => document.getElementById(tab.dataset.panel));
    if (!tabs.length || panels.some((panel) => !panel)) return;

    list.setAttribute("role", "tablist");
    tabs.forEach((tab, i) => {
      tab.setAttribute("role", "tab");
      tab.setAttribute("aria-controls", panels[i].id);
      tab.removeAttribute("aria-current");
      panels[i].setAttribute("role", "tabpanel");
      panels[i].setAttribute("aria-labelledby", tab.id);
      panels[i].tabIndex = 0;
    });

    function select(index, { focus = false, remember = false } = {}) {
      tabs.forEach((tab, i) => {
        const on = i === index;
        tab.setAttribute("aria-selected", String(on));
        tab.tabIndex = on ? 0 : -1;
        panels[i].hidden = !on;
      });
      if (focus) tabs[index].focus();
      if (remember) {
        const url = new URL(tabs[index].href);
        url.hash = "";
        window.history.replaceState(window.history.state, "", url);
      }
    }

    function fromHash() {
      const id = decodeURIComponent(window.location.hash.slice(1));
      return id ? panels.findIndex((panel) => panel.id === id) : -1;
    }

    const hashed = fromHash();
    const marked = tabs.findIndex((tab) => tab.hasAttribute("data-selected"));
    select(hashed >= 0 ? hashed : Math.max(marked, 0));

    list.addEventListener("click", (event) => {
      const tab = event.target instanceof Element ? event.target.closest("[role=tab]") : null;
      if (!tab || !tabs.includes(tab)) return;
      event.preventDefault();
      select(tabs.indexOf(tab), { focus: true, remember: true });
    });

    list.addEventListener("keydown", (event) => {
      const current = tabs.indexOf(document.activeElement);
      if (current < 0 || event.altKey || event.ctrlKey || event.metaKey) return;
      const last = tabs.length - 1;
      const next = {
        ArrowRight: current === last ? 0 : current + 1,
        ArrowLeft: current === 0 ? last : current - 1,
        Home: 0,
        End: last,
        " ": current, // a link does not react to Space by itself
      }[event.key];
      if (next === undefined) return;
      event.preventDefault();
      select(next, { focus: true, remember: true });
    });

    window.addEventListener("hashchange", () => {
      const index = fromHash();
      if (index >= 0) select(index, { focus: true });
    });
  }

  function ready() {
    for (const list of document.querySelectorAll("[data-tabs]")) setUp(list);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", ready);
  else ready();
})();

// An in-page accessibility check of the basics, run by tests/app/test_console_browser.py in the
// browser on every page it visits (axe-core is not available offline). Returns a list of
// problems, empty when the page passes:
// - the document has a language and a title, one <main>, exactly one <h1>, and headings that
//   never skip a level (h2 -> h4) or are empty;
// - every form control (input, select, textarea, progress) has an accessible name: a <label>,
//   aria-label, aria-labelledby or title; every button and link has text;
// - images have alt text; tables have header cells;
// - every visible text has a contrast ratio against its effective background of at least
//   4.5:1, or 3:1 for large text (24px, or 18.66px bold), as WCAG 2.1 AA asks.
return (function () {
  "use strict";
  var problems = [];

  function describe(element) {
    var text = (element.textContent || "").trim().replace(/\s+/g, " ").slice(0, 40);
    return element.tagName.toLowerCase() + (element.id ? "#" + element.id : "") +
      (element.getAttribute("name") ? "[name=" + element.getAttribute("name") + "]" : "") +
      (text ? ' "' + text + '"' : "");
  }

  // --- document, landmarks, headings --------------------------------------------------------
  if (!document.documentElement.getAttribute("lang")) { problems.push("<html> has no lang"); }
  if (!document.title.trim()) { problems.push("the page has no <title>"); }
  if (document.querySelectorAll("main").length !== 1) { problems.push("the page needs one <main>"); }
  var h1s = document.querySelectorAll("h1");
  if (h1s.length !== 1) { problems.push("the page has " + h1s.length + " <h1> elements"); }
  var previous = 0;
  Array.prototype.forEach.call(document.querySelectorAll("h1, h2, h3, h4, h5, h6"), function (h) {
    var level = Number(h.tagName.charAt(1));
    if (!h.textContent.trim()) { problems.push("an empty heading: " + describe(h)); }
    if (previous && level > previous + 1) {
      problems.push("heading " + describe(h) + " skips a level after <h" + previous + ">");
    }
    previous = level;
  });

  // --- names of controls, buttons, links, images, tables ------------------------------------
  function accessibleName(element) {
    var label = element.getAttribute("aria-label");
    if (label && label.trim()) { return label.trim(); }
    var ids = element.getAttribute("aria-labelledby");
    if (ids) {
      return ids.split(/\s+/).map(function (id) {
        var named = document.getElementById(id);
        return named ? named.textContent : "";
      }).join(" ").trim();
    }
    if (element.labels && element.labels.length) {
      return Array.prototype.map.call(element.labels, function (l) { return l.textContent; })
        .join(" ").trim();
    }
    return (element.getAttribute("title") || "").trim();
  }
  Array.prototype.forEach.call(document.querySelectorAll("input, select, textarea, progress"),
    function (control) {
      var type = (control.getAttribute("type") || "").toLowerCase();
      if (type === "hidden" || type === "submit" || type === "button" || type === "reset") { return; }
      if (!accessibleName(control)) { problems.push("a control without a label: " + describe(control)); }
    });
  Array.prototype.forEach.call(document.querySelectorAll("button, a[href]"), function (element) {
    if (!element.textContent.trim() && !accessibleName(element)) {
      problems.push("a " + element.tagName.toLowerCase() + " without text: " + describe(element));
    }
  });
  Array.prototype.forEach.call(document.querySelectorAll("img"), function (image) {
    if (!image.hasAttribute("alt")) { problems.push("an image without alt: " + image.src); }
  });
  Array.prototype.forEach.call(document.querySelectorAll("table"), function (table) {
    if (!table.querySelector("th")) { problems.push("a table without header cells: " + describe(table)); }
  });

  // --- contrast -----------------------------------------------------------------------------
  function parse(color) {
    var parts = (color.match(/[\d.]+/g) || []).map(Number);
    return {r: parts[0] || 0, g: parts[1] || 0, b: parts[2] || 0,
            a: parts.length > 3 ? parts[3] : 1};
  }
  function over(top, bottom) {  // top composited over an opaque bottom
    return {r: top.r * top.a + bottom.r * (1 - top.a), g: top.g * top.a + bottom.g * (1 - top.a),
            b: top.b * top.a + bottom.b * (1 - top.a), a: 1};
  }
  function background(element) {
    var layers = [];
    for (var node = element; node && node.nodeType === 1; node = node.parentElement) {
      var color = parse(getComputedStyle(node).backgroundColor);
      if (color.a > 0) { layers.push(color); }
      if (color.a >= 1) { break; }
    }
    var result = {r: 255, g: 255, b: 255, a: 1};  // the canvas
    for (var i = layers.length - 1; i >= 0; i--) { result = over(layers[i], result); }
    return result;
  }
  function luminance(color) {
    var channels = [color.r, color.g, color.b].map(function (value) {
      var c = value / 255;
      return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * channels[0] + 0.7152 * channels[1] + 0.0722 * channels[2];
  }
  var walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  var checked = new Set();
  while (walker.nextNode()) {
    var node = walker.currentNode;
    var element = node.parentElement;
    if (!node.textContent.trim() || !element || checked.has(element)) { continue; }
    checked.add(element);
    var style = getComputedStyle(element);
    if (style.visibility === "hidden" || style.display === "none" || !element.getClientRects().length) {
      continue;
    }
    if (element.closest("noscript, script, style, template")) { continue; }
    var back = background(element);
    var fore = over(parse(style.color), back);
    var ratio = (Math.max(luminance(fore), luminance(back)) + 0.05) /
                (Math.min(luminance(fore), luminance(back)) + 0.05);
    var size = parseFloat(style.fontSize);
    var large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
    if (ratio < (large ? 3 : 4.5)) {
      problems.push("contrast " + ratio.toFixed(2) + ":1 of " + describe(element) + " (" +
                    style.color + " on rgb(" + [back.r, back.g, back.b].map(Math.round) + "))");
    }
  }
  return problems;
}());

/* lmbook attention view: draws attention weights from an inlined JSON payload.
 *
 * No dependencies and no network requests. The library is defined once per page
 * (guarded by its version) and every view keeps its state in its own closure, so
 * several views on one page do not interfere. Token text is user data: it is only
 * ever written with textContent or setAttribute, never parsed as HTML.
 * The line view follows bertviz's head view (Vig, 2019).
 */
(function () {
  "use strict";
  var VERSION = 1;
  var existing = window.lmbookAttentionView;
  if (existing && existing.version >= VERSION) {
    return;
  }

  var SVGNS = "http://www.w3.org/2000/svg";
  var ROW = 20; // px per token row; matches .lmbook-attn-tok in the CSS
  var CAP = 20; // px of the column captions
  var HDR = 84; // px of the rotated key labels above the matrix
  var LINES_WIDTH = 180; // px between the query and key columns
  var LINE_COLOR = "#0072B2"; // Okabe-Ito blue
  // Paul Tol's "muted" palette: colour-blind safe, cycled past nine heads
  var HEAD_COLORS = ["#CC6677", "#332288", "#DDCC77", "#117733", "#88CCEE",
    "#882255", "#44AA99", "#999933", "#AA4499"];
  // viridis, sampled at 10 points
  var VIRIDIS = [[68, 1, 84], [72, 40, 120], [62, 74, 137], [49, 104, 142],
    [38, 130, 142], [31, 158, 137], [53, 183, 121], [110, 206, 88],
    [181, 222, 43], [253, 231, 37]];

  function viridis(v) {
    var x = Math.max(0, Math.min(1, v)) * (VIRIDIS.length - 1);
    var i = Math.min(Math.floor(x), VIRIDIS.length - 2);
    var f = x - i;
    var a = VIRIDIS[i];
    var b = VIRIDIS[i + 1];
    return "rgb(" + [0, 1, 2].map(function (c) {
      return Math.round(a[c] + f * (b[c] - a[c]));
    }).join(",") + ")";
  }

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function svgEl(tag, attrs) {
    var node = document.createElementNS(SVGNS, tag);
    for (var k in attrs) node.setAttribute(k, attrs[k]);
    return node;
  }

  // Make whitespace visible (character-level tokenizers emit " " and "\n").
  function shown(token) {
    if (token === "") return "\u2205";
    return token.replace(/ /g, "\u2423").replace(/\n/g, "\u23ce")
      .replace(/\t/g, "\u21e5");
  }

  function short(token) {
    var s = shown(token);
    return s.length > 24 ? s.slice(0, 23) + "\u2026" : s;
  }

  function fmt(v) {
    return v.toFixed(4);
  }

  function decode(payload) {
    var bin = atob(payload.data);
    var bytes = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    if (!payload.deflate) return Promise.resolve(bytes);
    if (typeof DecompressionStream === "undefined") {
      return Promise.reject(new Error(
        "this browser cannot decompress the data (no DecompressionStream)"));
    }
    var stream = new Blob([bytes]).stream()
      .pipeThrough(new DecompressionStream("deflate"));
    return new Response(stream).arrayBuffer().then(function (buf) {
      return new Uint8Array(buf);
    });
  }

  function select(label, options, value, cls) {
    var wrap = el("label", "lmbook-attn-control");
    wrap.appendChild(document.createTextNode(label + " "));
    var sel = el("select", cls);
    options.forEach(function (o) {
      var opt = el("option", null, o[1]);
      opt.value = String(o[0]);
      sel.appendChild(opt);
    });
    sel.value = String(value);
    wrap.appendChild(sel);
    return [wrap, sel];
  }

  function build(root, p, data) {
    var L = p.L, H = p.H, T = p.T, tokens = p.tokens;
    var state = {
      layer: p.layer, head: p.head, mode: p.mode,
      heads: [], hover: null, focus: null, selected: null,
      rove: {q: 0, k: 0}, cacheKey: null
    };
    for (var h0 = 0; h0 < H; h0++) state.heads.push(true);

    function q8(l, h, i, j) {
      return data[((l * H + h) * T + i) * T + j];
    }
    function shownHeads() {
      if (state.head !== "all") return [state.head];
      var out = [];
      state.heads.forEach(function (on, h) { if (on) out.push(h); });
      return out;
    }
    // weight of query i on key j, averaged over the shown heads
    function weight(i, j) {
      var hs = shownHeads();
      if (!hs.length) return 0;
      var s = 0;
      hs.forEach(function (h) { s += q8(state.layer, h, i, j); });
      return s / hs.length / 255;
    }
    function active() {
      return state.hover || state.focus || state.selected;
    }

    // ---- static skeleton -------------------------------------------------
    var controls = el("div", "lmbook-attn-controls");
    var layerSel = select("Layer", range(L).map(function (l) {
      return [l, String(l)];
    }), state.layer, "lmbook-attn-layer");
    var headOpts = range(H).map(function (h) { return [h, String(h)]; });
    headOpts.push(["all", "all heads"]);
    var headSel = select("Head", headOpts, state.head, "lmbook-attn-head");
    var modeSel = select("View", [["lines", "lines"], ["matrix", "matrix"]],
      state.mode, "lmbook-attn-mode");
    [layerSel, headSel, modeSel].forEach(function (s) {
      controls.appendChild(s[0]);
    });
    if (!p.controls) controls.hidden = true;

    var legend = el("div", "lmbook-attn-legend");
    legend.setAttribute("role", "group");
    legend.setAttribute("aria-label", "Heads shown");
    var legendButtons = range(H).map(function (h) {
      var b = el("button", "lmbook-attn-headbtn");
      b.type = "button";
      b.setAttribute("aria-pressed", "true");
      b.setAttribute("data-head", String(h));
      var sw = el("span", "lmbook-attn-swatch");
      sw.style.backgroundColor = HEAD_COLORS[h % HEAD_COLORS.length];
      b.appendChild(sw);
      b.appendChild(document.createTextNode(String(h)));
      b.addEventListener("click", function () {
        state.heads[h] = !state.heads[h];
        b.setAttribute("aria-pressed", String(state.heads[h]));
        redraw();
      });
      legend.appendChild(b);
      return b;
    });

    var body = el("div", "lmbook-attn-body");
    var left = column("q", "Query", "Queries: the tokens that attend");
    var right = column("k", "Key", "Keys: the tokens attended to");
    var svg = svgEl("svg", {"class": "lmbook-attn-svg", "aria-hidden": "true"});
    body.appendChild(left.node);
    body.appendChild(svg);
    body.appendChild(right.node);

    var scale = el("div", "lmbook-attn-scale");
    scale.appendChild(el("span", null, "0"));
    scale.appendChild(el("span", "lmbook-attn-scalebar"));
    scale.appendChild(el("span", null, "1"));
    var status = el("div", "lmbook-attn-status");
    var live = el("div", "lmbook-attn-live");
    live.setAttribute("aria-live", "polite");
    live.setAttribute("role", "status");

    [controls, legend, body, scale, status, live].forEach(function (n) {
      root.appendChild(n);
    });

    function range(n) {
      var out = [];
      for (var i = 0; i < n; i++) out.push(i);
      return out;
    }

    function column(side, caption, label) {
      var node = el("div", "lmbook-attn-col lmbook-attn-" +
        (side === "q" ? "left" : "right"));
      node.setAttribute("role", "group");
      node.setAttribute("aria-label", label);
      node.appendChild(el("div", "lmbook-attn-cap", caption));
      var buttons = tokens.map(function (tok, i) {
        var b = el("button", "lmbook-attn-tok", short(tok));
        b.type = "button";
        b.title = tok;
        b.tabIndex = i === 0 ? 0 : -1;
        b.setAttribute("aria-pressed", "false");
        b.setAttribute("data-index", String(i));
        b.setAttribute("data-side", side);
        b.addEventListener("mouseenter", function () {
          state.hover = {side: side, index: i};
          update();
        });
        b.addEventListener("mouseleave", function () {
          state.hover = null;
          update();
        });
        b.addEventListener("focus", function () {
          state.focus = {side: side, index: i};
          rove(side, i);
          update();
        });
        b.addEventListener("blur", function () {
          state.focus = null;
          update();
        });
        b.addEventListener("click", function () {
          var s = state.selected;
          state.selected = s && s.side === side && s.index === i ?
            null : {side: side, index: i};
          update();
        });
        node.appendChild(b);
        return b;
      });
      node.addEventListener("keydown", function (ev) {
        var t = ev.target;
        if (!t || !t.getAttribute || t.getAttribute("data-side") !== side) return;
        var i = Number(t.getAttribute("data-index"));
        var next = null;
        if (ev.key === "ArrowDown") next = [side, Math.min(T - 1, i + 1)];
        else if (ev.key === "ArrowUp") next = [side, Math.max(0, i - 1)];
        else if (ev.key === "Home") next = [side, 0];
        else if (ev.key === "End") next = [side, T - 1];
        else if ((ev.key === "ArrowRight" || ev.key === "ArrowLeft") &&
                 state.mode === "lines") {
          next = [side === "q" ? "k" : "q", i];
        } else if (ev.key === "Escape") {
          state.selected = null;
          update();
        }
        if (next) {
          ev.preventDefault();
          (next[0] === "q" ? left : right).buttons[next[1]].focus();
        }
      });
      return {node: node, buttons: buttons};
    }

    function rove(side, i) {
      var col = side === "q" ? left : right;
      col.buttons[state.rove[side]].tabIndex = -1;
      col.buttons[i].tabIndex = 0;
      state.rove[side] = i;
    }

    layerSel[1].addEventListener("change", function () {
      state.layer = Number(layerSel[1].value);
      redraw();
    });
    headSel[1].addEventListener("change", function () {
      var v = headSel[1].value;
      state.head = v === "all" ? "all" : Number(v);
      redraw();
    });
    modeSel[1].addEventListener("change", function () {
      state.mode = modeSel[1].value;
      if (state.mode === "matrix" && active() && active().side === "k") {
        state.hover = state.focus = state.selected = null;
      }
      redraw();
    });
    svg.addEventListener("mouseover", function (ev) {
      var t = ev.target;
      if (!t.getAttribute || !t.hasAttribute("data-weight")) return;
      var i = Number(t.getAttribute("data-q"));
      var j = Number(t.getAttribute("data-k"));
      status.textContent = "\u201c" + shown(tokens[i]) + "\u201d \u2192 \u201c" +
        shown(tokens[j]) + "\u201d: " + Number(t.getAttribute("data-weight"))
        .toFixed(3);
    });
    svg.addEventListener("mouseleave", function () { status.textContent = ""; });

    // ---- drawing -----------------------------------------------------------
    var allGroup = null; // every line, or the whole matrix, for the current key
    var focusGroup = null; // lines of the active token, or the row outline

    function y(i) { return CAP + (i + 0.5) * ROW; }

    function drawAll() {
      var key = [state.mode, state.layer, shownHeads().join(",")].join("|");
      if (key === state.cacheKey) return;
      state.cacheKey = key;
      while (svg.firstChild) svg.removeChild(svg.firstChild);
      allGroup = svgEl("g", {"class": "lmbook-attn-all"});
      focusGroup = svgEl("g", {"class": "lmbook-attn-focus"});
      var frag = document.createDocumentFragment();
      if (state.mode === "lines") {
        svg.setAttribute("width", LINES_WIDTH);
        svg.setAttribute("height", CAP + T * ROW);
        shownHeads().forEach(function (h) {
          var color = state.head === "all" ?
            HEAD_COLORS[h % HEAD_COLORS.length] : LINE_COLOR;
          for (var i = 0; i < T; i++) {
            for (var j = 0; j < T; j++) {
              var v = q8(state.layer, h, i, j);
              if (v && v / 255 >= p.minLine) {
                frag.appendChild(line(h, i, j, v / 255, color, 1.5));
              }
            }
          }
        });
      } else {
        var hs = shownHeads();
        svg.setAttribute("width", T * ROW + 4);
        svg.setAttribute("height", HDR + T * ROW);
        tokens.forEach(function (tok, j) {
          var x = (j + 0.5) * ROW;
          var label = svgEl("text", {
            "class": "lmbook-attn-klabel",
            "transform": "translate(" + (x + 4) + "," + (HDR - 4) + ") rotate(-60)"
          });
          label.textContent = shown(tok).length > 12 ?
            shown(tok).slice(0, 11) + "\u2026" : shown(tok);
          frag.appendChild(label);
        });
        for (var i = 0; i < T; i++) {
          for (var j = 0; j < T; j++) {
            var s = 0;
            hs.forEach(function (h) { s += q8(state.layer, h, i, j); });
            var v = hs.length ? s / hs.length / 255 : 0;
            frag.appendChild(svgEl("rect", {
              x: j * ROW, y: HDR + i * ROW, width: ROW - 1, height: ROW - 1,
              fill: viridis(v), "data-q": i, "data-k": j, "data-weight": fmt(v)
            }));
          }
        }
      }
      allGroup.appendChild(frag);
      svg.appendChild(allGroup);
      svg.appendChild(focusGroup);
    }

    function line(h, i, j, v, color, width) {
      return svgEl("line", {
        x1: 0, y1: y(i), x2: LINES_WIDTH, y2: y(j), stroke: color,
        "stroke-opacity": v, "stroke-width": width,
        "data-head": h, "data-q": i, "data-k": j, "data-weight": fmt(v)
      });
    }

    function drawFocus() {
      while (focusGroup.firstChild) focusGroup.removeChild(focusGroup.firstChild);
      var a = active();
      if (state.mode === "lines") {
        allGroup.setAttribute("display", a ? "none" : "inline");
        if (!a) return;
        shownHeads().forEach(function (h) {
          var color = state.head === "all" ?
            HEAD_COLORS[h % HEAD_COLORS.length] : LINE_COLOR;
          for (var n = 0; n < T; n++) {
            var i = a.side === "q" ? a.index : n;
            var j = a.side === "q" ? n : a.index;
            var v = q8(state.layer, h, i, j);
            if (v) focusGroup.appendChild(line(h, i, j, v / 255, color, 2.5));
          }
        });
      } else if (a && a.side === "q") {
        focusGroup.appendChild(svgEl("rect", {
          "class": "lmbook-attn-outline", x: 0.5, y: HDR + a.index * ROW + 0.5,
          width: T * ROW - 2, height: ROW - 2
        }));
      }
    }

    function paintTokens() {
      var a = active();
      var sel = state.selected;
      [left, right].forEach(function (col, c) {
        var side = c === 0 ? "q" : "k";
        col.buttons.forEach(function (b, n) {
          b.classList.remove("lmbook-attn-active", "lmbook-attn-hit");
          b.style.backgroundColor = "";
          b.removeAttribute("data-weight");
          var isSel = !!sel && sel.side === side && sel.index === n;
          b.classList.toggle("lmbook-attn-selected", isSel);
          b.setAttribute("aria-pressed", String(isSel));
          if (!a) return;
          if (a.side === side) {
            if (a.index === n) b.classList.add("lmbook-attn-active");
            return;
          }
          var v = side === "k" ? weight(a.index, n) : weight(n, a.index);
          b.setAttribute("data-weight", fmt(v));
          if (v > 0) {
            b.classList.add("lmbook-attn-hit");
            b.style.backgroundColor = "rgba(86,180,233," + v.toFixed(3) + ")";
          }
        });
      });
    }

    function announce() {
      var a = active();
      var hs = shownHeads();
      var where = "Layer " + state.layer + ", " + (state.head === "all" ?
        "mean of " + hs.length + " heads" : "head " + state.head);
      if (!a) {
        live.textContent = where + ". Hover over or focus a token to list " +
          "the tokens it attends to.";
        return;
      }
      var scores = [];
      for (var n = 0; n < T; n++) {
        var v = a.side === "q" ? weight(a.index, n) : weight(n, a.index);
        if (v > 0) scores.push([v, n]);
      }
      scores.sort(function (x, z) { return z[0] - x[0] || x[1] - z[1]; });
      var top = scores.slice(0, p.topK).map(function (s) {
        return "\u201c" + shown(tokens[s[1]]) + "\u201d " + s[0].toFixed(2);
      });
      live.textContent = where + ": \u201c" + shown(tokens[a.index]) +
        "\u201d (position " + a.index + ") " +
        (a.side === "q" ? "attends most to " : "is attended to most by ") +
        (top.length ? top.join(", ") : "nothing") + ".";
    }

    function update() {
      var a = active();
      root.setAttribute("data-active", a ? a.side + a.index : "");
      drawFocus();
      paintTokens();
      announce();
    }

    function redraw() {
      var matrix = state.mode === "matrix";
      right.node.hidden = matrix;
      legend.hidden = state.head !== "all";
      scale.hidden = !matrix;
      left.node.style.paddingTop = matrix ? (HDR - CAP) + "px" : "0";
      root.setAttribute("data-layer", String(state.layer));
      root.setAttribute("data-head", String(state.head));
      root.setAttribute("data-mode", state.mode);
      drawAll();
      update();
    }

    redraw();
    root.setAttribute("data-ready", "true");
    root.setAttribute("data-ready-ms", performance.now().toFixed(1));
    // first frame after drawing: rAF runs before the paint, the timeout after it
    window.requestAnimationFrame(function () {
      setTimeout(function () {
        root.setAttribute("data-painted-ms", performance.now().toFixed(1));
      }, 0);
    });
  }

  function fail(root, message) {
    var box = el("p", "lmbook-attn-error", "Attention view failed: " + message);
    root.appendChild(box);
    root.setAttribute("data-error", message);
  }

  function mount(root) {
    if (!root || root.getAttribute("data-mounted")) return;
    root.setAttribute("data-mounted", "true");
    var fallback = root.querySelector(".lmbook-attn-fallback");
    if (fallback) fallback.parentNode.removeChild(fallback);
    var payload;
    try {
      var src = root.querySelector("script.lmbook-attn-data");
      payload = JSON.parse(src.textContent);
    } catch (err) {
      fail(root, "could not read the data (" + err.message + ")");
      return;
    }
    decode(payload).then(function (data) {
      if (data.length !== payload.L * payload.H * payload.T * payload.T) {
        throw new Error("expected " + payload.L * payload.H * payload.T *
          payload.T + " weights, got " + data.length);
      }
      build(root, payload, data);
    }).catch(function (err) {
      fail(root, err.message);
    });
  }

  // Mount every view on the page that is not mounted yet (a fallback for
  // front ends that evaluate scripts out of place).
  function mountPending() {
    var roots = document.querySelectorAll(".lmbook-attn:not([data-mounted])");
    for (var i = 0; i < roots.length; i++) mount(roots[i]);
  }

  window.lmbookAttentionView = {
    version: VERSION, mount: mount, mountPending: mountPending
  };
})();

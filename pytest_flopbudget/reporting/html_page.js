// pytest-flopbudget's HTML report: the summary table and, for each opened test, an icicle chart
// of its module tree. Every name in the data is written as text (textContent, attribute values),
// never parsed as markup; charts are built only when their test is opened.
(function () {
  "use strict";

  var started = performance.now();
  var DATA = JSON.parse(document.getElementById("flopbudget-data").textContent);
  var METRICS = [["flops", "FLOPs"], ["macs", "MACs"], ["params", "params"], ["memory", "memory at the peak"],
    ["backward", "backward FLOPs"]];
  // a module row: [name, type, flops, macs, params, memory, backward flops]
  var COLUMN = { flops: 2, macs: 3, params: 4, memory: 5, backward: 6 };
  var STATUS_TEXT = {
    "grew": "grew (its own work)", "grew-inside": "grew inside (a module below it grew)", "shrank": "shrank",
    "new": "new", "same": "unchanged", "absent": "not in baseline"
  };
  var SEVERITY = ["over budget", "regressed", "unmeasured", "device mismatch", "test failed", "new", "improved", "ok"];
  var ROW_HEIGHT = 22;
  var LABEL_MIN_PX = 28;
  var OVERFLOW_MIN_PX = 3;
  var state = { metric: "flops", charts: [], width: 0 };
  var tooltip;

  // -- small helpers ------------------------------------------------------------------------------
  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function decimal(x) {
    if (Number.isInteger(x)) return String(x);
    if (Math.abs(x) >= 1) return x.toFixed(3).replace(/\.?0+$/, "");
    return x.toPrecision(3);
  }
  function count(n) {
    if (n === null || n === undefined) return "-";
    var units = [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"]];
    for (var i = 0; i < units.length; i++) if (Math.abs(n) >= units[i][0]) return decimal(n / units[i][0]) + units[i][1];
    return decimal(n);
  }
  function bytes(n) {
    if (n === null || n === undefined) return "-";
    var units = ["B", "KiB", "MiB", "GiB", "TiB"], x = n, i = 0;
    while (Math.abs(x) >= 1024 && i < units.length - 1) { x /= 1024; i++; }
    return (i === 0 ? String(x) : x.toFixed(2).replace(/\.?0+$/, "")) + " " + units[i];
  }
  function amount(metric, n) {
    if (metric === "memory") return bytes(n);
    if (metric === "params") return count(n);
    return count(n) + " " + (metric === "macs" ? "MACs" : "FLOPs");
  }
  // a module's own share; below zero when its children share parameters (each counts them)
  function ownAmount(metric, n) {
    return n < 0 ? "none (" + amount(metric, -n) + " shared below)" : amount(metric, n);
  }
  function percent(now, was) {
    if (was === now) return "=";
    if (!was) return "+inf%";
    var p = (now - was) / was * 100;
    return (p > 0 ? "+" : "") + p.toFixed(1) + "%";
  }
  function naturalKey(text) {
    return String(text).split(/(\d+)/).map(function (p, i) { return i % 2 ? Number(p) : p; });
  }
  function compareKeys(a, b) {
    for (var i = 0; i < Math.min(a.length, b.length); i++) {
      if (a[i] < b[i]) return -1;
      if (a[i] > b[i]) return 1;
    }
    return a.length - b.length;
  }
  function depthOf(name) { return name === "" ? 0 : name.split(".").length; }
  function parentName(name) { var i = name.lastIndexOf("."); return i < 0 ? "" : name.slice(0, i); }
  function lastPart(name) { return name.slice(name.lastIndexOf(".") + 1); }

  // -- the module tree of one test ----------------------------------------------------------------
  function Tree(tree) {
    var self = this;
    this.nodes = [];
    this.byName = Object.create(null);
    tree.modules.forEach(function (row) {
      var node = { name: row[0], row: row, base: null, children: [], parent: null };
      self.nodes.push(node);
      self.byName[row[0]] = node;
    });
    if (!self.byName[""]) {
      var rootRow = ["", "", 0, 0, 0, null];
      var root = { name: "", row: rootRow, base: null, children: [], parent: null };
      self.nodes.unshift(root);
      self.byName[""] = root;
    }
    this.nodes.forEach(function (node) {
      if (node.name === "") return;
      var up = parentName(node.name);
      while (up !== "" && !self.byName[up]) up = parentName(up);
      node.parent = self.byName[up];
      node.parent.children.push(node);
    });
    this.root = this.byName[""];
    this.hasMemory = tree.modules.some(function (row) { return row[5] !== null && row[5] !== undefined; });
    this.hasBackward = tree.modules.some(function (row) { return row[6] > 0; });
    this.baselineDepth = tree.baseline_depth;
    this.removed = [];
    this.baseKids = Object.create(null);  // baseline children's sums, by parent name
    if (tree.baseline) this.attachBaseline(tree.baseline);
    this.hasBaseline = !!tree.baseline;
  }
  Tree.prototype.attachBaseline = function (baseline) {
    var self = this, base = Object.create(null), absent = Object.create(null);
    baseline.absent.forEach(function (name) { absent[name] = true; });
    this.nodes.forEach(function (node) { if (!absent[node.name]) base[node.name] = node.row; });
    baseline.differs.forEach(function (row) { base[row[0]] = row; });
    Object.keys(base).forEach(function (name) {
      if (self.byName[name]) self.byName[name].base = base[name];
      else self.removed.push(name);
      if (name === "") return;
      var up = parentName(name);
      while (up !== "" && !base[up]) up = parentName(up);
      var sums = self.baseKids[up] || (self.baseKids[up] = [0, 0, 0, 0, 0, 0]);
      for (var c = 2; c <= 5; c++) sums[c] += base[name][c] || 0;
    });
    this.removed.sort(function (a, b) { return compareKeys(naturalKey(a), naturalKey(b)); });
  };
  Tree.prototype.value = function (node, column) { return node.row[column] || 0; };
  Tree.prototype.own = function (node, column) {
    var self = this, total = this.value(node, column);
    node.children.forEach(function (child) { total -= self.value(child, column); });
    return total;
  };
  // how a module changed against the baseline, in one metric
  Tree.prototype.status = function (node, column) {
    if (!this.hasBaseline) return "absent";
    var was = node.base;
    if (!was) return depthOf(node.name) <= this.baselineDepth ? "new" : "absent";
    var now = node.row[column], before = was[column];
    if (now === null || now === undefined || before === null || before === undefined) return "absent";
    if (now < before) return "shrank";
    if (now === before) return "same";
    var kids = this.baseKids[node.name];
    if (!kids) return "grew";  // a leaf of the baseline: all of its growth is its own
    return this.own(node, column) > before - kids[column] ? "grew" : "grew-inside";
  };

  // -- the chart ----------------------------------------------------------------------------------
  function Chart(test, host) {
    this.test = test;
    this.tree = new Tree(test.tree);
    this.focus = this.tree.root;
    this.blocks = new Map();
    this.crumbs = host.appendChild(el("nav", "crumbs"));
    this.canvas = host.appendChild(el("div", "chart"));
    this.canvas.setAttribute("role", "group");
    this.canvas.setAttribute("aria-label", "module tree of " + test.key);
    this.note = host.appendChild(el("p", "note"));
    this.info = host.appendChild(el("div", "info"));
    var self = this;
    this.canvas.addEventListener("mousemove", function (event) { self.hover(event); });
    this.canvas.addEventListener("mouseleave", function () { tooltip.style.display = "none"; });
    this.canvas.addEventListener("click", function (event) {
      var node = self.blocks.get(event.target.closest(".block"));
      if (!node) return;
      self.zoom(node === self.focus && node.parent ? node.parent : node);
      self.describe(node);
    });
    if (this.tree.removed.length) {
      var shown = this.tree.removed.slice(0, 20).join(", ");
      var more = this.tree.removed.length > 20 ? " and " + (this.tree.removed.length - 20) + " more" : "";
      host.appendChild(el("p", "note", "in the baseline, no longer measured: " + shown + more));
    }
    this.draw();
    this.describe(this.tree.root);
  }
  Chart.prototype.zoom = function (node) {
    if (node.children.length === 0 && node.parent) node = node.parent;  // a leaf is seen best in its parent
    this.focus = node;
    this.draw();
  };
  Chart.prototype.label = function (node) {
    if (node.name === "") return this.test.key;
    return node.name;
  };
  Chart.prototype.draw = function () {
    var self = this, tree = this.tree, column = COLUMN[state.metric];
    // every chart is as wide as the page's column: measured once (reading a width lays the page
    // out, which for 20 charts opened at load costs more than drawing them), again after a resize
    var width = state.width || (state.width = this.canvas.clientWidth || 800);
    this.blocks = new Map();
    this.canvas.textContent = "";
    this.crumbs.textContent = "";
    var path = [], up = this.focus;
    while (up) { path.unshift(up); up = up.parent; }
    path.forEach(function (node, i) {
      if (i) self.crumbs.appendChild(document.createTextNode(" \u203A "));
      var button = self.crumbs.appendChild(el("button", "", node.name === "" ? "model" : lastPart(node.name)));
      button.type = "button";
      button.addEventListener("click", function () { self.zoom(node); self.describe(node); });
    });
    var rows = 0;
    path.slice(0, -1).forEach(function (node, i) {  // the focus's ancestors, as full-width bars
      self.block(node, 0, width, i, column, "ancestor");
      rows = i + 1;
    });
    var total = tree.value(this.focus, column);
    this.note.textContent = "";
    if (state.metric === "memory" && !tree.hasMemory) {
      this.note.textContent = "memory was not tracked for this test";
    } else if (total <= 0) {
      this.note.textContent = "no " + state.metric + " in " + (this.focus.name || "this model");
    }
    var deepest = rows;
    var scale = total > 0 ? width / total : 0;
    function place(node, x, w, row, overflow) {
      self.block(node, x, w, row, column, overflow ? "overflow" : "");
      deepest = Math.max(deepest, row + 1);
      if (overflow) return;  // its own modules show when it is opened (a click)
      var cursor = x, end = x + w;
      node.children.forEach(function (child) {
        var cw = tree.value(child, column) * scale;
        if (cw <= 0) return;
        if (cursor + cw > end + 0.5) {  // more than its parent holds: shared parameters, drawn under their first owner
          var kept = Math.max(end - cursor, OVERFLOW_MIN_PX);
          place(child, Math.min(cursor, end - kept), kept, row + 1, true);
          cursor = end;
        } else {
          place(child, cursor, cw, row + 1, false);
          cursor += cw;
        }
      });
    }
    if (total > 0) place(this.focus, 0, width, rows, false);
    this.canvas.style.height = (Math.max(deepest, 1) * ROW_HEIGHT) + "px";
  };
  Chart.prototype.block = function (node, x, w, row, column, extra) {
    var tree = this.tree, status = tree.status(node, column);
    var div = el("div", "block " + status + (extra ? " " + extra : "") + (depthOf(node.name) % 2 ? " odd" : ""));
    div.style.left = x + "px";
    div.style.width = w + "px";
    div.style.top = (row * ROW_HEIGHT) + "px";
    div.setAttribute("data-name", node.name);
    div.setAttribute("data-status", status);
    if (w >= LABEL_MIN_PX) {
      var name = node.name === "" ? (node.row[1] || "model") : lastPart(node.name);
      div.textContent = node.row[1] && node.name !== "" ? name + " " + node.row[1] : name;
    }
    this.blocks.set(div, node);
    this.canvas.appendChild(div);
    return div;
  };
  Chart.prototype.lines = function (node) {
    var tree = this.tree, column = COLUMN[state.metric], lines = [];
    lines.push(this.label(node) + (node.row[1] ? " (" + node.row[1] + ")" : ""));
    var total = tree.value(node, column), own = tree.own(node, column), root = tree.value(tree.root, column);
    lines.push(state.metric + ": " + amount(state.metric, total) + " inclusive, " + ownAmount(state.metric, own) +
      " own" + (root > 0 ? ", " + (total / root * 100).toFixed(1) + "% of the model" : ""));
    var status = tree.status(node, column);
    if (node.base && node.base[column] !== null && node.base[column] !== undefined) {
      lines.push("baseline: " + amount(state.metric, node.base[column]) + " (" + percent(node.row[column], node.base[column]) +
        "), " + STATUS_TEXT[status]);
    } else {
      lines.push(STATUS_TEXT[status]);
    }
    if (node.parent) {
      var sum = 0;
      node.parent.children.forEach(function (c) { sum += tree.value(c, column); });
      if (sum > tree.value(node.parent, column)) {
        lines.push("its siblings add up to more than their parent (" + amount(state.metric, sum) + " > " +
          amount(state.metric, tree.value(node.parent, column)) + "): shared parameters are drawn under their first owner");
      }
    }
    return lines;
  };
  Chart.prototype.hover = function (event) {
    var node = this.blocks.get(event.target.closest(".block"));
    if (!node) { tooltip.style.display = "none"; return; }
    tooltip.textContent = "";
    this.lines(node).forEach(function (line) { tooltip.appendChild(el("div", "", line)); });
    tooltip.style.display = "block";
    var x = Math.min(event.clientX + 14, window.innerWidth - tooltip.offsetWidth - 8);
    // above the chart (or below it), so that no block is hidden; by the pointer when neither fits
    var box = this.canvas.getBoundingClientRect(), height = tooltip.offsetHeight;
    var y = box.top - height - 6;
    if (y < 0) y = box.bottom + 6 + height <= window.innerHeight ? box.bottom + 6 : event.clientY + 16;
    tooltip.style.left = Math.max(x, 0) + "px";
    tooltip.style.top = Math.max(y, 0) + "px";
  };
  // the pinned description of a module: every metric, inclusive and own, against the baseline
  Chart.prototype.describe = function (node) {
    var tree = this.tree, info = this.info;
    info.textContent = "";
    info.setAttribute("data-name", node.name);
    info.appendChild(el("div", "", this.label(node) + (node.row[1] ? " (" + node.row[1] + ")" : "") +
      (node.children.length ? ", " + node.children.length + (node.children.length === 1 ? " module below" : " modules below") : "")));
    var table = info.appendChild(el("table"));
    var head = table.appendChild(el("tr"));
    ["metric", "inclusive", "own", "baseline", "change", ""].forEach(function (t) { head.appendChild(el("th", "", t)); });
    METRICS.forEach(function (m) {
      var column = COLUMN[m[0]];
      if ((m[0] === "memory" && !tree.hasMemory) || (m[0] === "backward" && !tree.hasBackward)) return;
      var tr = table.appendChild(el("tr"));
      var was = node.base ? node.base[column] : null;
      var known = was !== null && was !== undefined;
      [m[1], amount(m[0], tree.value(node, column)), ownAmount(m[0], tree.own(node, column)),
        known ? amount(m[0], was) : "-", known ? percent(node.row[column], was) : "-",
        STATUS_TEXT[tree.status(node, column)]].forEach(function (t) { tr.appendChild(el("td", "", t)); });
    });
  };

  // -- the page -----------------------------------------------------------------------------------
  function legend() {
    var box = el("div", "legend");
    ["grew", "grew-inside", "shrank", "new", "same", "absent"].forEach(function (status) {
      var item = box.appendChild(el("span"));
      item.appendChild(el("span", "swatch block-swatch " + status)).style.background = "var(--" + status + ")";
      item.appendChild(document.createTextNode(STATUS_TEXT[status]));
    });
    var over = box.appendChild(el("span"));
    var swatch = over.appendChild(el("span", "swatch"));
    swatch.style.background = "repeating-linear-gradient(45deg, #555 0 2px, #ddd 2px 5px)";
    over.appendChild(document.createTextNode("more than its parent (shared parameters)"));
    return box;
  }

  function controls(anyMemory, anyBackward, onFilter) {
    var bar = el("div", "controls");
    var set = bar.appendChild(el("fieldset"));
    set.id = "metric";
    set.appendChild(el("legend", "", "chart widths:"));
    METRICS.forEach(function (m) {
      var label = set.appendChild(el("label"));
      var input = label.appendChild(el("input"));
      input.type = "radio";
      input.name = "metric";
      input.value = m[0];
      input.checked = m[0] === state.metric;
      input.disabled = (m[0] === "memory" && !anyMemory) || (m[0] === "backward" && !anyBackward);
      label.appendChild(document.createTextNode(" " + m[1]));
      input.addEventListener("change", function () {
        if (!input.checked) return;
        state.metric = input.value;
        state.charts.forEach(function (chart) { chart.draw(); chart.describe(chart.focus); });
      });
    });
    var filter = bar.appendChild(el("input"));
    filter.type = "search";
    filter.id = "filter";
    filter.placeholder = "filter tests (id, verdict)";
    filter.addEventListener("input", function () { onFilter(filter.value.toLowerCase()); });
    bar.appendChild(legend());
    return bar;
  }

  function summaryTable(tests, anyMemory) {
    var table = el("table", "summary");
    table.id = "summary";
    var hidden = anyMemory ? [] : [4];
    var header = table.appendChild(el("thead")).appendChild(el("tr"));
    var body = table.appendChild(el("tbody"));
    var rows = tests.map(function (test, index) {
      var tr = el("tr", test.failing ? "failing" : "");
      tr.setAttribute("data-key", test.key);
      test.cells.forEach(function (cell, c) {
        if (hidden.indexOf(c) >= 0) return;
        var td = tr.appendChild(el("td", c === 7 ? "verdict" + (test.failing ? " failing" : "") : ""));
        if (c === 0) {
          var link = td.appendChild(el("a", "", cell));
          link.href = "#t-" + index;
          link.addEventListener("click", function () { openSection(index); });
        } else {
          td.textContent = cell;
        }
      });
      return { tr: tr, test: test, index: index };
    });
    var sortValues = [
      function (r) { return naturalKey(r.test.key); },
      function (r) { return r.test.flops; }, function (r) { return r.test.macs; },
      function (r) { return r.test.params; }, function (r) { return r.test.peak_memory; },
      function (r) { return r.test.budget_used; },
      function (r) { return r.test.cells[6]; },
      function (r) { return Math.min.apply(null, r.test.verdicts.map(function (v) { var i = SEVERITY.indexOf(v); return i < 0 ? 99 : i; }).concat([99])); }
    ];
    DATA.header.forEach(function (name, c) {
      if (hidden.indexOf(c) >= 0) return;
      var th = header.appendChild(el("th", c === 7 ? "verdict" : ""));
      var button = th.appendChild(el("button", "", name));
      button.type = "button";
      button.addEventListener("click", function () {
        var ascending = th.getAttribute("aria-sort") !== "ascending";
        Array.prototype.forEach.call(header.children, function (other) { other.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        var value = sortValues[c];
        rows.slice().sort(function (a, b) {
          var x = value(a), y = value(b), order;
          if (x === null || x === undefined) return y === null || y === undefined ? a.index - b.index : 1;  // no value: last
          if (y === null || y === undefined) return -1;
          order = Array.isArray(x) ? compareKeys(x, y) : x < y ? -1 : x > y ? 1 : 0;
          return (ascending ? order : -order) || a.index - b.index;
        }).forEach(function (r) { body.appendChild(r.tr); });
      });
    });
    rows.forEach(function (r) { body.appendChild(r.tr); });
    return { table: table, rows: rows };
  }

  var sections = [];
  function openSection(index) {
    var section = sections[index];
    if (section && !section.details.open) section.details.open = true;
    if (section) render(section);
  }
  function render(section) {
    if (section.rendered || !section.details.open) return;
    section.rendered = true;
    section.details.setAttribute("data-rendered", "1");
    var test = section.test, body = section.body;
    if (test.reasons.length) {
      var list = body.appendChild(el("ul", "reasons"));
      test.reasons.forEach(function (reason) { list.appendChild(el("li", "", reason)); });
    }
    if (!test.tree) {
      body.appendChild(el("p", "note", "no module tree: this test measured nothing"));
      return;
    }
    state.charts.push(new Chart(test, body));
  }
  function testSection(test, index) {
    var details = el("details", "test");
    details.id = "t-" + index;
    details.setAttribute("data-key", test.key);
    var summary = details.appendChild(el("summary"));
    var words = test.verdicts.join(", ") || "measured";
    summary.appendChild(el("span", "badge" + (test.failing ? " failing" : ""), words));
    summary.appendChild(el("span", "key", test.key));
    summary.appendChild(el("span", "change", test.cells[6] === "-" ? "" : test.cells[6]));
    var section = { test: test, details: details, body: details.appendChild(el("div", "body")), rendered: false };
    details.addEventListener("toggle", function () { render(section); });
    return section;
  }

  function build() {
    var root = document.getElementById("report");
    tooltip = document.body.appendChild(el("div"));
    tooltip.id = "tooltip";
    var tests = DATA.tests;
    var anyMemory = tests.some(function (t) { return t.peak_memory !== null && t.peak_memory !== undefined; }) ||
      tests.some(function (t) { return t.tree && t.tree.modules.some(function (r) { return r[5] !== null; }); });
    var anyBackward = tests.some(function (t) { return t.tree && t.tree.modules.some(function (r) { return r[6] > 0; }); });
    root.appendChild(el("h1", "", DATA.title));
    DATA.about.forEach(function (line) { root.appendChild(el("p", "about", line)); });
    if (DATA.count_line) root.appendChild(el("p", "count-line", DATA.count_line));
    if (DATA.hints.length) {
      var hints = root.appendChild(el("ul", "hints"));
      DATA.hints.forEach(function (h) { hints.appendChild(el("li", "", h)); });
    }
    var table = summaryTable(tests, anyMemory);
    root.appendChild(controls(anyMemory, anyBackward, function (text) {
      table.rows.forEach(function (r) {
        var match = !text || (r.test.key + " " + r.test.verdicts.join(" ") + " " + r.test.cells[6]).toLowerCase().indexOf(text) >= 0;
        r.tr.classList.toggle("hidden", !match);
        sections[r.index].details.classList.toggle("hidden", !match);
      });
    }));
    if (tests.length) root.appendChild(table.table);
    if (DATA.stale.length) {
      root.appendChild(el("h2", "", "Stale baseline entries"));
      var stale = root.appendChild(el("ul"));
      DATA.stale.forEach(function (key) { stale.appendChild(el("li", "", key)); });
    }
    root.appendChild(el("h2", "", "Where the work goes, test by test"));
    var holder = root.appendChild(el("div"));
    holder.id = "tests";
    sections = tests.map(testSection);
    // over-budget and regressed tests first, then the rest, each in the table's order
    sections.filter(function (s) { return s.test.open; }).concat(sections.filter(function (s) { return !s.test.open; }))
      .forEach(function (s) { holder.appendChild(s.details); });
    sections.forEach(function (s) { if (s.test.open) { s.details.open = true; render(s); } });
    var pending = 0;
    window.addEventListener("resize", function () {
      clearTimeout(pending);
      pending = setTimeout(function () { state.width = 0; state.charts.forEach(function (c) { c.draw(); }); }, 100);
    });
    // for bench/html_report.py: the script's own time, and the time since the navigation began
    document.documentElement.setAttribute("data-build-ms", (performance.now() - started).toFixed(1));
    document.documentElement.setAttribute("data-ready-ms", performance.now().toFixed(1));
    document.documentElement.setAttribute("data-ready", "1");
  }

  build();
})();

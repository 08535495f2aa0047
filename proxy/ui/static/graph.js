// The memory graph as an SVG picture: a small force layout (no library) and a renderer.
// Everything a label shows goes in through textContent, never as markup.
"use strict";

window.MemoryGraph = (() => {
  const SVG_NS = "http://www.w3.org/2000/svg";
  const EDGE_COLOURS = {
    MENTIONS: "#9aa0a6",
    RELATED_TO: "#1a73e8",
    LEADS_TO: "#e8710a",
    SUPERSEDES: "#a142f4",
  };
  const OTHER_EDGE_COLOUR = "#5f6368";
  const KIND_COLOURS = { fact: "#188038", episode: "#1a73e8", preference: "#d93025", profile: "#f9ab00" };
  const WIDTH = 900;
  const HEIGHT = 560;

  function edgeColour(type) {
    return EDGE_COLOURS[type] || OTHER_EDGE_COLOUR;
  }

  // Fruchterman–Reingold: nodes repel, edges pull, a weak pull to the centre keeps parts together.
  // Starts from a golden-angle spiral, so the same graph is always drawn the same way.
  function layout(nodes, edges) {
    const n = nodes.length;
    const pos = nodes.map((_, i) => {
      const r = 12 * Math.sqrt(i + 1);
      const a = i * 2.399963;
      return { x: WIDTH / 2 + r * Math.cos(a), y: HEIGHT / 2 + r * Math.sin(a) };
    });
    if (n < 2) return pos;
    const index = new Map(nodes.map((node, i) => [node.id, i]));
    const links = edges
      .map((e) => [index.get(e.source), index.get(e.target)])
      .filter(([s, t]) => s !== undefined && t !== undefined && s !== t);
    const k = Math.min(Math.sqrt((WIDTH * HEIGHT) / n) * 0.6, 90);
    const reach2 = (3 * k) ** 2;
    const iterations = n > 600 ? 60 : n > 200 ? 150 : 300;
    let temperature = WIDTH / 8;
    const dx = new Float64Array(n);
    const dy = new Float64Array(n);
    for (let step = 0; step < iterations; step++) {
      dx.fill(0);
      dy.fill(0);
      for (let i = 0; i < n; i++) {
        for (let j = i + 1; j < n; j++) {
          let x = pos[i].x - pos[j].x;
          let y = pos[i].y - pos[j].y;
          let d2 = x * x + y * y;
          if (d2 > reach2) continue; // as in FR's grid variant: far nodes do not push, so parts stay near
          if (d2 < 0.01) { x = 0.1 * ((i % 3) - 1) + 0.05; y = 0.1; d2 = x * x + y * y; }
          const f = (k * k) / d2;
          dx[i] += x * f; dy[i] += y * f;
          dx[j] -= x * f; dy[j] -= y * f;
        }
      }
      for (const [s, t] of links) {
        const x = pos[s].x - pos[t].x;
        const y = pos[s].y - pos[t].y;
        const d = Math.sqrt(x * x + y * y) || 0.01;
        const f = d / k;
        dx[s] -= x * f; dy[s] -= y * f;
        dx[t] += x * f; dy[t] += y * f;
      }
      for (let i = 0; i < n; i++) {
        dx[i] += (WIDTH / 2 - pos[i].x) * 0.05;
        dy[i] += (HEIGHT / 2 - pos[i].y) * 0.05;
        const d = Math.sqrt(dx[i] * dx[i] + dy[i] * dy[i]) || 1;
        const move = Math.min(d, temperature);
        pos[i].x += (dx[i] / d) * move;
        pos[i].y += (dy[i] / d) * move;
      }
      temperature = Math.max(temperature * 0.97, 0.5);
    }
    return pos;
  }

  function svg(tag, attrs = {}) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
    return node;
  }

  function shortLabel(text, max) {
    return text.length > max ? `${text.slice(0, max - 1)}…` : text;
  }

  function radius(node) {
    return node.type === "entity" ? 7 : 6 + 8 * (node.importance ?? 0.5);
  }

  function markers(types) {
    const defs = svg("defs");
    types.forEach((type, i) => {
      const marker = svg("marker", {
        id: `arrow-${i}`, viewBox: "0 0 10 10", refX: 10, refY: 5,
        markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse",
      });
      marker.append(svg("path", { d: "M0,0 L10,5 L0,10 z", fill: edgeColour(type) }));
      defs.append(marker);
    });
    return defs;
  }

  function drawEdge(edge, from, to, markerIndex) {
    // Stop the line at the target's rim, so its arrow head shows.
    const x = to.p.x - from.p.x;
    const y = to.p.y - from.p.y;
    const d = Math.sqrt(x * x + y * y) || 1;
    const cut = radius(to.node) + 2;
    const line = svg("line", {
      class: "edge", x1: from.p.x, y1: from.p.y, x2: to.p.x - (x / d) * cut, y2: to.p.y - (y / d) * cut,
      stroke: edgeColour(edge.type), "stroke-width": 1 + Math.min(edge.strength ?? 1, 3),
      "marker-end": `url(#arrow-${markerIndex})`,
    });
    line.dataset.type = edge.type;
    const title = svg("title");
    title.textContent = edge.type;
    line.append(title);
    return line;
  }

  function drawNode(node, p) {
    const group = svg("g", { class: `node node-${node.type}`, transform: `translate(${p.x},${p.y})`, tabindex: 0 });
    group.dataset.id = node.id;
    group.dataset.type = node.type;
    const r = radius(node);
    if (node.type === "entity") {
      group.append(svg("rect", { x: -r, y: -r, width: 2 * r, height: 2 * r, rx: 2, transform: "rotate(45)" }));
    } else {
      const circle = svg("circle", { r, fill: KIND_COLOURS[node.kind] || "#5f6368" });
      if (node.active === false) group.classList.add("inactive");
      group.append(circle);
    }
    const label = svg("text", { x: r + 3, y: 4 });
    label.textContent = shortLabel(node.label, node.type === "entity" ? 24 : 18);
    const title = svg("title");
    title.textContent = `${node.type === "entity" ? "entity" : node.kind || "memory"}: ${node.label}`;
    group.append(label, title);
    return group;
  }

  // Wheel zooms around the pointer, dragging the background pans: both only change the viewBox.
  function panAndZoom(root, box) {
    const apply = () => root.setAttribute("viewBox", `${box.x} ${box.y} ${box.w} ${box.h}`);
    root.addEventListener("wheel", (event) => {
      event.preventDefault();
      const rect = root.getBoundingClientRect();
      const fx = (event.clientX - rect.left) / rect.width;
      const fy = (event.clientY - rect.top) / rect.height;
      const scale = event.deltaY > 0 ? 1.15 : 1 / 1.15;
      const w = box.w * scale;
      const h = box.h * scale;
      box.x += (box.w - w) * fx; box.y += (box.h - h) * fy; box.w = w; box.h = h;
      apply();
    }, { passive: false });
    let drag = null;
    root.addEventListener("pointerdown", (event) => {
      if (event.target !== root) return;
      drag = { x: event.clientX, y: event.clientY };
      root.setPointerCapture(event.pointerId);
    });
    root.addEventListener("pointermove", (event) => {
      if (!drag) return;
      const rect = root.getBoundingClientRect();
      box.x -= ((event.clientX - drag.x) * box.w) / rect.width;
      box.y -= ((event.clientY - drag.y) * box.h) / rect.height;
      drag = { x: event.clientX, y: event.clientY };
      apply();
    });
    root.addEventListener("pointerup", () => { drag = null; });
    apply();
  }

  // Draws `graph` ({nodes, edges} of GET /v1/memories/graph) into `container`; onSelect(node) on a click.
  function render(container, graph, onSelect) {
    const nodes = graph.nodes;
    const byId = new Map();
    const positions = layout(nodes, graph.edges);
    nodes.forEach((node, i) => byId.set(node.id, { node, p: positions[i] }));
    const edges = graph.edges.filter((e) => byId.has(e.source) && byId.has(e.target));
    const types = [...new Set([...Object.keys(EDGE_COLOURS), ...edges.map((e) => e.type)])];

    const root = svg("svg", {
      id: "graph-svg", role: "img", "aria-label": "Memory graph", width: "100%", height: HEIGHT,
    });
    root.dataset.nodeCount = String(nodes.length);
    root.dataset.edgeCount = String(edges.length);
    root.append(markers(types));
    const edgeLayer = svg("g", { class: "edges" });
    const nodeLayer = svg("g", { class: "nodes" });
    for (const edge of edges) {
      edgeLayer.append(drawEdge(edge, byId.get(edge.source), byId.get(edge.target), types.indexOf(edge.type)));
    }
    for (const { node, p } of byId.values()) {
      const group = drawNode(node, p);
      const select = () => {
        root.querySelectorAll(".node.selected").forEach((g) => g.classList.remove("selected"));
        group.classList.add("selected");
        onSelect(node);
      };
      group.addEventListener("click", select);
      group.addEventListener("keydown", (event) => { if (event.key === "Enter") select(); });
      nodeLayer.append(group);
    }
    root.append(edgeLayer, nodeLayer);

    const xs = positions.map((p) => p.x);
    const ys = positions.map((p) => p.y);
    const pad = 60;
    const box = nodes.length
      ? { x: Math.min(...xs) - pad, y: Math.min(...ys) - pad,
          w: Math.max(...xs) - Math.min(...xs) + 2 * pad + 120, h: Math.max(...ys) - Math.min(...ys) + 2 * pad }
      : { x: 0, y: 0, w: WIDTH, h: HEIGHT };
    container.replaceChildren(root);
    panAndZoom(root, box);
    return root;
  }

  function legend(list) {
    const items = Object.entries(EDGE_COLOURS).map(([type, colour]) => {
      const item = document.createElement("li");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = colour;
      item.append(swatch, type);
      return item;
    });
    const kinds = Object.entries(KIND_COLOURS).map(([kind, colour]) => {
      const item = document.createElement("li");
      const dot = document.createElement("span");
      dot.className = "dot";
      dot.style.background = colour;
      item.append(dot, kind);
      return item;
    });
    const entity = document.createElement("li");
    const diamond = document.createElement("span");
    diamond.className = "diamond";
    entity.append(diamond, "entity");
    list.replaceChildren(...items, ...kinds, entity);
  }

  return { render, legend, edgeColour };
})();

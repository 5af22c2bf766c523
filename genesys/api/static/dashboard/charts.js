/* Genesys dashboard: hand-written SVG charts (no library, nothing fetched).
 *
 * lineChart(container, options) and barChart(container, options) draw into `container` at its
 * current width, replacing what was there. Every series path carries data-series and data-points
 * (the number of points drawn), every bar data-series and data-value, so that tests can read them.
 */
(function () {
  "use strict";

  const NS = "http://www.w3.org/2000/svg";
  const MARGIN = { top: 10, right: 12, bottom: 22, left: 46 };

  function svg(tag, attrs, children) {
    const el = document.createElementNS(NS, tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value !== undefined && value !== null) el.setAttribute(key, String(value));
    }
    for (const child of children || []) {
      if (child !== null && child !== undefined) el.append(child);
    }
    return el;
  }

  function html(tag, className, text) {
    const el = document.createElement(tag);
    if (className) el.className = className;
    if (text !== undefined) el.textContent = text;
    return el;
  }

  /* A round number at or above `value`: 1, 2, 2.5 or 5 times a power of ten. */
  function niceStep(value) {
    if (!(value > 0)) return 1;
    const power = Math.pow(10, Math.floor(Math.log10(value)));
    const f = value / power;
    const step = f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10;
    return step * power;
  }

  /* An axis from 0 to at least `top` in `count` round steps (whole steps when `integer`). */
  function niceScale(top, count, integer) {
    let step = niceStep((top > 0 ? top : 1) / count);
    if (integer) step = Math.max(1, Math.round(step));
    return { max: step * Math.max(1, Math.ceil(top / step - 1e-9)), step };
  }

  function frame(container, options) {
    const width = Math.max(220, Math.floor(container.clientWidth || 360));
    const height = options.height || 150;
    const plot = {
      left: MARGIN.left,
      top: MARGIN.top,
      right: width - MARGIN.right,
      bottom: height - MARGIN.bottom,
    };
    const root = svg("svg", {
      class: "chart-svg",
      width: width,
      height: height,
      viewBox: `0 0 ${width} ${height}`,
      role: "img",
      "aria-label": options.label || "chart",
    });
    return { root, width, height, plot };
  }

  function yAxis(f, scale, format) {
    const { plot, root } = f;
    const yMax = scale.max;
    const y = (v) => plot.bottom - (v / yMax) * (plot.bottom - plot.top);
    const ticks = Math.round(yMax / scale.step);
    for (let i = 0; i <= ticks; i++) {
      const value = scale.step * i;
      const py = y(value);
      root.append(svg("line", { class: "grid", x1: plot.left, x2: plot.right, y1: py, y2: py }));
      const label = svg("text", { class: "tick", x: plot.left - 6, y: py + 3.5, "text-anchor": "end" });
      label.textContent = format(value);
      root.append(label);
    }
    return y;
  }

  function xLabels(f, positions) {
    for (const { x, text, anchor } of positions) {
      const label = svg("text", {
        class: "tick",
        x: x,
        y: f.plot.bottom + 15,
        "text-anchor": anchor || "middle",
      });
      label.textContent = text;
      f.root.append(label);
    }
  }

  function empty(container, text) {
    container.replaceChildren(html("div", "chart-empty", text || "No data yet"));
  }

  function legend(items) {
    const box = html("div", "legend");
    for (const item of items) {
      const entry = html("span", "legend-item");
      entry.append(html("i", `swatch ${item.cls}${item.dashed ? " dashed" : ""}`));
      entry.append(document.createTextNode(item.name));
      if (item.value !== undefined && item.value !== null) {
        entry.append(html("b", null, item.value));
      }
      box.append(entry);
    }
    return box;
  }

  function tooltipLayer(container, f, xs, describe, xToPx) {
    const tip = html("div", "chart-tip");
    tip.hidden = true;
    const cursor = svg("line", {
      class: "cursor",
      x1: 0,
      x2: 0,
      y1: f.plot.top,
      y2: f.plot.bottom,
      visibility: "hidden",
    });
    const overlay = svg("rect", {
      class: "overlay",
      x: f.plot.left,
      y: f.plot.top,
      width: Math.max(1, f.plot.right - f.plot.left),
      height: Math.max(1, f.plot.bottom - f.plot.top),
    });
    f.root.append(cursor, overlay);
    overlay.addEventListener("mousemove", (event) => {
      const box = f.root.getBoundingClientRect();
      const px = event.clientX - box.left;
      let best = 0;
      for (let i = 1; i < xs.length; i++) {
        if (Math.abs(xToPx(xs[i]) - px) < Math.abs(xToPx(xs[best]) - px)) best = i;
      }
      const bx = xToPx(xs[best]);
      cursor.setAttribute("x1", bx);
      cursor.setAttribute("x2", bx);
      cursor.setAttribute("visibility", "visible");
      tip.replaceChildren(...describe(best));
      tip.hidden = false;
      const left = Math.min(Math.max(bx + 10, 0), f.width - tip.offsetWidth - 4);
      tip.style.left = `${bx + 10 + tip.offsetWidth > f.width ? bx - tip.offsetWidth - 10 : left}px`;
      tip.style.top = `${f.plot.top}px`;
    });
    overlay.addEventListener("mouseleave", () => {
      tip.hidden = true;
      cursor.setAttribute("visibility", "hidden");
    });
    return tip;
  }

  /* A missing value breaks the line, unless `join` (a sparse series, e.g. eval loss every N steps). */
  function pathOf(points, x, y, join) {
    let d = "";
    let pen = false;
    for (const p of points) {
      if (p.y === null || p.y === undefined || Number.isNaN(p.y)) {
        if (!join) pen = false;
        continue;
      }
      d += `${pen ? "L" : "M"}${x(p.x).toFixed(1)},${y(p.y).toFixed(1)}`;
      pen = true;
    }
    return d;
  }

  /* options: series [{name, cls, points: [{x, y}], dashed, area, join, markers, last}], xMin, xMax, xFormat,
   * xTicks, yFormat, yMax, target {value, label}, height, label, emptyText, tooltipX. */
  function lineChart(container, options) {
    const series = options.series || [];
    const drawn = series.map((s) => s.points.filter((p) => p.y !== null && p.y !== undefined));
    if (!drawn.some((points) => points.length)) {
      empty(container, options.emptyText);
      return;
    }
    container.replaceChildren();
    const f = frame(container, options);
    const all = drawn.flat();
    const xMin = options.xMin !== undefined ? options.xMin : Math.min(...all.map((p) => p.x));
    let xMax = options.xMax !== undefined ? options.xMax : Math.max(...all.map((p) => p.x));
    if (xMax <= xMin) xMax = xMin + 1;
    const top = Math.max(...all.map((p) => p.y), options.target ? options.target.value * 1.1 : 0);
    const y = yAxis(f, niceScale(top * 1.02, 4, false), options.yFormat || String);
    const x = (v) => f.plot.left + ((v - xMin) / (xMax - xMin)) * (f.plot.right - f.plot.left);
    const ticks = options.xTicks || 4;
    const labels = [];
    for (let i = 0; i <= ticks; i++) {
      const v = xMin + ((xMax - xMin) * i) / ticks;
      labels.push({
        x: x(v),
        text: (options.xFormat || String)(v),
        anchor: i === 0 ? "start" : i === ticks ? "end" : "middle",
      });
    }
    xLabels(f, labels);
    if (options.target) {
      const ty = y(options.target.value);
      f.root.append(svg("line", { class: "target", x1: f.plot.left, x2: f.plot.right, y1: ty, y2: ty }));
      const label = svg("text", { class: "target-label", x: f.plot.right - 2, y: ty - 4, "text-anchor": "end" });
      label.textContent = options.target.label;
      f.root.append(label);
    }
    series.forEach((s, index) => {
      const points = drawn[index];
      if (!points.length) return;
      if (s.area && points.length > 1) {
        const d = pathOf(s.points, x, y);
        const closing = `L${x(points[points.length - 1].x).toFixed(1)},${f.plot.bottom}L${x(points[0].x).toFixed(1)},${f.plot.bottom}Z`;
        f.root.append(svg("path", { class: `area ${s.cls}`, d: d + closing }));
      }
      f.root.append(
        svg("path", {
          class: `series ${s.cls}${s.dashed ? " dashed" : ""}`,
          d: pathOf(s.points, x, y, s.join),
          "data-series": s.name,
          "data-points": points.length,
        }),
      );
      const marked = s.markers ? points : [points[points.length - 1]];
      for (const p of marked) f.root.append(svg("circle", { class: `dot ${s.cls}`, cx: x(p.x), cy: y(p.y), r: 3 }));
    });
    container.append(f.root);
    const xs = series[0].points.map((p) => p.x);
    if (xs.length) {
      const tip = tooltipLayer(
        container,
        f,
        xs,
        (i) => {
          const rows = [html("div", "tip-title", (options.tooltipX || options.xFormat || String)(xs[i]))];
          for (const s of series) {
            const p = s.points.find((q) => q.x === xs[i]);
            const value = p && p.y !== null && p.y !== undefined ? (options.yFormat || String)(p.y) : "–";
            const row = html("div", "tip-row");
            row.append(html("i", `swatch ${s.cls}`), document.createTextNode(`${s.name} `), html("b", null, value));
            rows.push(row);
          }
          return rows;
        },
        x,
      );
      container.append(tip);
    }
    if (options.legend !== false) {
      container.append(
        legend(series.map((s) => ({ name: s.name, cls: s.cls, dashed: s.dashed, value: s.last }))),
      );
    }
  }

  /* options: bars [{x, stacks: [{name, cls, value}]}], xFormat (of a bar's x), yFormat, height,
   * label, emptyText, legend [{name, cls, value}]. */
  function barChart(container, options) {
    const bars = options.bars || [];
    const totals = bars.map((b) => b.stacks.reduce((sum, s) => sum + (s.value || 0), 0));
    if (!bars.length) {
      empty(container, options.emptyText);
      return;
    }
    container.replaceChildren();
    const f = frame(container, options);
    const y = yAxis(f, niceScale(Math.max(1, ...totals), 4, true), options.yFormat || String);
    const band = (f.plot.right - f.plot.left) / bars.length;
    const gap = band > 6 ? Math.min(2, band * 0.2) : 0;
    bars.forEach((bar, i) => {
      let base = 0;
      for (const stack of bar.stacks) {
        if (!stack.value) continue;
        const y0 = y(base);
        const y1 = y(base + stack.value);
        f.root.append(
          svg("rect", {
            class: `bar ${stack.cls}`,
            x: (f.plot.left + i * band + gap / 2).toFixed(1),
            y: y1.toFixed(1),
            width: Math.max(1, band - gap).toFixed(1),
            height: Math.max(0.5, y0 - y1).toFixed(1),
            "data-series": stack.name,
            "data-value": stack.value,
          }),
        );
        base += stack.value;
      }
    });
    const format = options.xFormat || String;
    const step = Math.max(1, Math.round(bars.length / 4));
    const labels = [];
    for (let i = 0; i < bars.length; i += step) {
      labels.push({ x: f.plot.left + i * band + band / 2, text: format(bars[i].x), anchor: i === 0 ? "start" : "middle" });
    }
    xLabels(f, labels);
    container.append(f.root);
    const tip = tooltipLayer(
      container,
      f,
      bars.map((_, i) => i),
      (i) => {
        const rows = [html("div", "tip-title", (options.tooltipX || format)(bars[i].x))];
        for (const stack of bars[i].stacks) {
          const row = html("div", "tip-row");
          row.append(html("i", `swatch ${stack.cls}`), document.createTextNode(`${stack.name} `), html("b", null, String(stack.value)));
          rows.push(row);
        }
        return rows;
      },
      (i) => f.plot.left + i * band + band / 2,
    );
    container.append(tip);
    if (options.legend) container.append(legend(options.legend));
  }

  window.GenesysCharts = { svg, html, niceScale, lineChart, barChart };
})();

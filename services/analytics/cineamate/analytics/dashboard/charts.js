// Small SVG charts for the dashboard: a time-series line chart and an overlaid
// histogram on a logarithmic axis. No library: the page loads nothing from elsewhere.
"use strict";

window.CineaCharts = (() => {
  const SVG = "http://www.w3.org/2000/svg";
  const MARGIN = { top: 14, right: 18, bottom: 30, left: 56 };
  // Okabe-Ito: distinguishable with the common colour-vision deficiencies.
  const PALETTE = ["#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#7f6a1f", "#555555"];
  const MINUTE = 60_000;
  const TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440, 2880, 10080].map(
    (minutes) => minutes * MINUTE,
  );

  function svgElement(name, attributes, parent) {
    const node = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
    if (parent) parent.append(node);
    return node;
  }

  function text(parent, x, y, content, attributes = {}) {
    const node = svgElement("text", { x, y, ...attributes }, parent);
    node.textContent = content;
    return node;
  }

  function niceStep(span, count) {
    const raw = span / Math.max(count, 1);
    const power = 10 ** Math.floor(Math.log10(raw));
    const fraction = raw / power;
    return (fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 5 ? 5 : 10) * power;
  }

  function linearTicks(max, count) {
    const step = niceStep(max || 1, count);
    const top = Math.max(step, Math.ceil((max || 1) / step) * step);
    const ticks = [];
    for (let value = 0; value <= top + step / 2; value += step) ticks.push(value);
    return { top, ticks };
  }

  function timeTicks(start, stop) {
    const step = TIME_STEPS.find((candidate) => (stop - start) / candidate <= 6) || TIME_STEPS.at(-1);
    const ticks = [];
    for (let value = Math.ceil(start / step) * step; value <= stop; value += step) ticks.push(value);
    return { step, ticks };
  }

  function timeLabel(value, step) {
    const date = new Date(value);
    if (step >= 1440 * MINUTE) return date.toLocaleDateString(undefined, { month: "short", day: "numeric" });
    return date.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
  }

  function compact(value) {
    if (Math.abs(value) >= 1e6) return `${+(value / 1e6).toPrecision(3)}M`;
    if (Math.abs(value) >= 1e3) return `${+(value / 1e3).toPrecision(3)}k`;
    return `${+value.toPrecision(3)}`;
  }

  function frame(container, label, height) {
    container.replaceChildren();
    const width = Math.max(container.clientWidth || 0, 280);
    const svg = svgElement("svg", {
      width,
      height,
      viewBox: `0 0 ${width} ${height}`,
      role: "img",
      "aria-label": label,
      class: "chart-svg",
    }, container);
    svgElement("title", {}, svg).textContent = label;
    return { svg, width, height, plotWidth: width - MARGIN.left - MARGIN.right, plotHeight: height - MARGIN.top - MARGIN.bottom };
  }

  function yAxis(svg, scaleY, ticks, plotWidth, format) {
    const group = svgElement("g", { class: "axis axis-y" }, svg);
    for (const tick of ticks) {
      const y = scaleY(tick);
      svgElement("line", { class: "grid", x1: MARGIN.left, x2: MARGIN.left + plotWidth, y1: y, y2: y }, group);
      text(group, MARGIN.left - 6, y + 4, format(tick), { "text-anchor": "end" });
    }
  }

  function legend(container, series) {
    const list = document.createElement("ul");
    list.className = "legend";
    for (const item of series) {
      const entry = document.createElement("li");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = item.color;
      entry.append(swatch, item.name);
      list.append(entry);
    }
    container.append(list);
  }

  /**
   * Lines over time. series: [{name, color, points: [{x: epoch ms, y}]}];
   * options: {label, height, format}.
   */
  function lineChart(container, series, options) {
    const { svg, plotWidth, plotHeight } = frame(container, options.label, options.height || 240);
    const points = series.flatMap((item) => item.points);
    let start = Math.min(...points.map((point) => point.x));
    let stop = Math.max(...points.map((point) => point.x));
    if (stop - start < MINUTE) {
      start -= MINUTE / 2;
      stop += MINUTE / 2;
    }
    const { top, ticks } = linearTicks(Math.max(...points.map((point) => point.y), 0), 4);
    const scaleX = (x) => MARGIN.left + ((x - start) / (stop - start)) * plotWidth;
    const scaleY = (y) => MARGIN.top + plotHeight - (y / top) * plotHeight;
    yAxis(svg, scaleY, ticks, plotWidth, options.format || compact);
    const xAxis = svgElement("g", { class: "axis axis-x" }, svg);
    const time = timeTicks(start, stop);
    for (const tick of time.ticks) {
      text(xAxis, scaleX(tick), MARGIN.top + plotHeight + 18, timeLabel(tick, time.step), { "text-anchor": "middle" });
    }
    svgElement("line", {
      class: "baseline", x1: MARGIN.left, x2: MARGIN.left + plotWidth,
      y1: MARGIN.top + plotHeight, y2: MARGIN.top + plotHeight,
    }, svg);
    for (const item of series) {
      if (!item.points.length) continue;
      const path = item.points
        .map((point, index) => `${index ? "L" : "M"}${scaleX(point.x).toFixed(1)},${scaleY(point.y).toFixed(1)}`)
        .join("");
      svgElement("path", { class: "line", d: path, stroke: item.color, "data-series": item.name }, svg);
      const last = item.points.at(-1);
      svgElement("circle", { class: "end", cx: scaleX(last.x), cy: scaleY(last.y), r: 3, fill: item.color }, svg);
    }
    legend(container, series);
  }

  /**
   * Distributions on a log axis, overlaid. series: [{name, color, bins: [{low, high, share}]}];
   * options: {label, height, marker: {value, label}}.
   */
  function histogram(container, series, options) {
    const { svg, plotWidth, plotHeight } = frame(container, options.label, options.height || 220);
    const bins = series.flatMap((item) => item.bins);
    const bounds = bins.flatMap((bin) => [bin.low, bin.high]);
    if (options.marker) bounds.push(options.marker.value * 0.8, options.marker.value * 1.25);
    const low = Math.log10(Math.min(...bounds));
    const high = Math.log10(Math.max(...bounds));
    const { top, ticks } = linearTicks(Math.max(...bins.map((bin) => bin.share), 0), 4);
    const scaleX = (x) => MARGIN.left + ((Math.log10(x) - low) / (high - low)) * plotWidth;
    const scaleY = (y) => MARGIN.top + plotHeight - (y / top) * plotHeight;
    yAxis(svg, scaleY, ticks, plotWidth, (value) => `${+(value * 100).toPrecision(3)}%`);
    const xAxis = svgElement("g", { class: "axis axis-x" }, svg);
    const decades = high - low;
    const multiples = decades > 3 ? [1] : decades > 1.5 ? [1, 3] : [1, 2, 5];
    for (let power = Math.floor(low); power <= Math.ceil(high); power += 1) {
      for (const multiple of multiples) {
        const value = multiple * 10 ** power;
        if (Math.log10(value) < low || Math.log10(value) > high) continue;
        text(xAxis, scaleX(value), MARGIN.top + plotHeight + 18, `${+value.toPrecision(2)} ms`, { "text-anchor": "middle" });
      }
    }
    for (const item of series) {
      const group = svgElement("g", { class: "bars", "data-series": item.name }, svg);
      for (const bin of item.bins) {
        const x = scaleX(bin.low);
        svgElement("rect", {
          class: "bar",
          x,
          y: scaleY(bin.share),
          width: Math.max(scaleX(bin.high) - x - 0.5, 1),
          height: MARGIN.top + plotHeight - scaleY(bin.share),
          fill: item.color,
          stroke: item.color,
        }, group);
      }
    }
    svgElement("line", {
      class: "baseline", x1: MARGIN.left, x2: MARGIN.left + plotWidth,
      y1: MARGIN.top + plotHeight, y2: MARGIN.top + plotHeight,
    }, svg);
    if (options.marker) {
      const x = scaleX(options.marker.value);
      svgElement("line", { class: "marker", x1: x, x2: x, y1: MARGIN.top, y2: MARGIN.top + plotHeight }, svg);
      text(svg, x + 4, MARGIN.top + 10, options.marker.label, { class: "marker-label" });
    }
    legend(container, series);
  }

  return { PALETTE, histogram, lineChart };
})();

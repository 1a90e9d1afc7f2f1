// Theming: every colour in style.css comes from a theme variable (JupyterLab, then VS Code, then a light
// default), all rules are scoped under .qscope, and a dark JupyterLab theme's variables reach the widget.
import { describe, it, expect } from "vitest";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { FakeModel, explorerState, mount } from "./fake-model.js";

const css = readFileSync(join(dirname(fileURLToPath(import.meta.url)), "..", "src", "style.css"), "utf8");
const noComments = css.replace(/\/\*[\s\S]*?\*\//g, "");

describe("theme", () => {
  it("every rule is scoped under .qscope", () => {
    const selectors = [...noComments.matchAll(/(^|})\s*([^{}@][^{}]*?)\s*{/g)].map((m) => m[2].trim())
      .filter((s) => !/^(to|from|\d+%)$/.test(s) && !s.startsWith("@"));
    expect(selectors.length).toBeGreaterThan(50);
    for (const sel of selectors) for (const part of sel.split(",")) expect(part, sel).toMatch(/\.qscope\b/);
  });

  it("colours use variables only, with JupyterLab -> VS Code -> light fallbacks", () => {
    const root = noComments.match(/^\.qscope\s*{([^}]*)}/m)[1];
    for (const v of ["--jp-layout-color0", "--jp-layout-color1", "--jp-layout-color2", "--jp-ui-font-color0", "--jp-ui-font-color1",
      "--jp-ui-font-color2", "--jp-border-color1", "--jp-brand-color1", "--jp-ui-font-family", "--jp-code-font-family",
      "--vscode-editor-background", "--vscode-foreground"]) expect(root).toContain(v);
    const rest = noComments.replace(/^\.qscope\s*{[^}]*}/m, "");
    const colourProps = [...rest.matchAll(/(?:^|[;{\s])(color|background(?:-color)?|border(?:-[a-z]+)?-color|fill|stroke|outline)\s*:\s*([^;}]+)/g)];
    expect(colourProps.length).toBeGreaterThan(20);
    for (const [, prop, value] of colourProps) {
      const ok = /var\(--qs-/.test(value) || /^(transparent|inherit|currentColor|none)$/.test(value.trim()) || /^\d/.test(value.trim());
      expect(ok, `${prop}: ${value}`).toBe(true);
    }
  });

  /** render with extra variables on :root and return the root's computed background / text colours */
  async function colours(vars) {
    const style = document.createElement("style");
    style.textContent = `:root { ${vars} }\n${css}`;
    document.head.append(style);
    try {
      const { $, cleanup } = await mount(new FakeModel(explorerState()));
      const cs = getComputedStyle($(".qscope"));
      const out = { bg: cs.backgroundColor, fg: cs.color, error: getComputedStyle($("[data-qscope='error']")).color };
      cleanup();
      return out;
    } finally {
      style.remove();
    }
  }
  const norm = (c) => c.replace(/\s+/g, "").toLowerCase();

  it("a dark JupyterLab theme: the widget takes its colours from the --jp variables", async () => {
    document.body.dataset.jpThemeLight = "false";
    try {
      const c = await colours("--jp-layout-color0: #111111; --jp-ui-font-color1: #eeeeee; --jp-error-color1: #ff7070;");
      expect([c.bg, c.fg, c.error].map(norm)).toEqual(["#111111", "#eeeeee", "#ff7070"]);
    } finally {
      delete document.body.dataset.jpThemeLight;
    }
  });

  it("VS Code's variables when JupyterLab's are absent, plain light defaults otherwise (Colab)", async () => {
    const vs = await colours("--vscode-editor-background: #1e1e1e; --vscode-foreground: #cccccc;");
    expect([vs.bg, vs.fg].map(norm)).toEqual(["#1e1e1e", "#cccccc"]);
    const plain = await colours("");
    expect(norm(plain.bg)).toMatch(/^(#ffffff|rgb\(255,255,255\))$/);
    expect(norm(plain.fg)).toMatch(/^rgba\(0,0,0,0\.87\)$/);
  });
});

describe("clickable tooltip rows", () => {
  it("the tooltip passes the pointer through (tokens under it stay hoverable) but its feature rows take clicks", () => {
    expect(noComments).toMatch(/\.qscope-tooltip\s*{[^}]*pointer-events:\s*none/);
    expect(noComments).toMatch(/\.qscope-tooltip tr\.qscope-clickable\s*{[^}]*pointer-events:\s*auto/);
  });
});

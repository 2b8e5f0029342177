#include "serve/web_page.hpp"

namespace loom::serve {

// Query parameters prefill the form (prompt, max_tokens, steps, temperature, seed, mask) and
// autorun=1 submits it at once, so a link (or a headless browser in the tests) can run it.
// When the stream ends, #answer holds the finished text and body[data-state] is "done".
const char* web_page_html() {
  return R"LOOMHTML(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>loom serve</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 52em; color: #222; padding: 0 1em; }
  h1 { font-size: 1.3em; }
  textarea { width: 100%; height: 5em; font: inherit; box-sizing: border-box; }
  fieldset { border: 1px solid #ccc; margin: .8em 0; }
  label { margin-right: 1em; white-space: nowrap; }
  input[type=number] { width: 6em; }
  #answer { white-space: pre-wrap; word-break: break-word; font-family: ui-monospace, monospace;
            background: #f7f7f5; border: 1px solid #ddd; padding: .8em; min-height: 3em; }
  #answer .m { color: #aaa; }
  #answer .new { background: #ffe066; }
  #status { color: #666; margin: .5em 0; font-size: .9em; }
  button { font-size: 1em; padding: .3em 1.2em; }
</style>
</head>
<body data-state="idle">
<h1>loom &mdash; watch a diffusion model answer</h1>
<form id="form">
  <textarea id="prompt" placeholder="Prompt"></textarea>
  <fieldset>
    <label><input type="radio" name="mode" value="complete" checked> complete</label>
    <label><input type="radio" name="mode" value="mask"> mask and refill the prompt</label>
    <label>share masked <input id="mask" type="number" min="0.01" max="1" step="0.05" value="0.3"></label>
  </fieldset>
  <fieldset>
    <label>length <input id="max_tokens" type="number" min="1" value="32"></label>
    <label>steps <input id="steps" type="number" min="1" value="32"></label>
    <label>temperature <input id="temperature" type="number" min="0" step="0.1" value="0"></label>
    <label>seed <input id="seed" type="number" min="0" value="0"></label>
  </fieldset>
  <button id="run" type="submit">Generate</button>
</form>
<div id="status"></div>
<div id="answer"></div>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const PLACEHOLDER = "\u2591";

function renderStep(pieces, revealed) {
  const fresh = new Set(revealed || []);
  const out = $("answer");
  out.textContent = "";
  pieces.forEach((piece, i) => {
    const span = document.createElement("span");
    if (piece === null) { span.className = "m"; span.textContent = PLACEHOLDER; }
    else { span.textContent = piece; if (fresh.has(i)) span.className = "new"; }
    out.appendChild(span);
  });
}

// POSTs a streamed completion and hands each server-sent event to onEvent. An XMLHttpRequest
// rather than fetch: it stays one pending request until the last event (so a headless browser
// waiting for the network waits for the whole answer), and reads the same in every browser.
function streamCompletion(body, onEvent) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/v1/completions");
    xhr.setRequestHeader("Content-Type", "application/json");
    let seen = 0, buffer = "";
    const take = () => {
      buffer += xhr.responseText.slice(seen);
      seen = xhr.responseText.length;
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const line = buffer.slice(0, cut).trim();
        buffer = buffer.slice(cut + 2);
        if (line.startsWith("data: ") && line.slice(6) !== "[DONE]") onEvent(JSON.parse(line.slice(6)));
      }
    };
    xhr.onprogress = () => { if (xhr.status === 200) take(); };
    xhr.onload = () => {
      if (xhr.status !== 200) {
        let message = "HTTP " + xhr.status;
        try { const e = JSON.parse(xhr.responseText); if (e.error) message = e.error.message; } catch (_) {}
        reject(new Error(message));
        return;
      }
      take();
      resolve();
    };
    xhr.onerror = () => reject(new Error("the connection to the server failed"));
    xhr.send(JSON.stringify(body));
  });
}

async function run() {
  const mask = document.querySelector("input[name=mode]:checked").value === "mask";
  const body = {
    prompt: $("prompt").value,
    max_tokens: mask ? 0 : Number($("max_tokens").value),
    steps: Number($("steps").value),
    temperature: Number($("temperature").value),
    seed: Number($("seed").value),
    stream: true,
  };
  if (mask) body.mask = Number($("mask").value);
  document.body.dataset.state = "running";
  $("run").disabled = true;
  $("answer").textContent = "";
  $("status").textContent = "sampling...";
  let steps = 0, finalText = null, error = null, shown = "";
  try {
    await streamCompletion(body, (event) => {
      if (event.error) { error = event.error.message; return; }
      const loom = event.loom || {};
      if (loom.final) { finalText = event.choices[0].text; return; }
      steps = loom.step;
      renderStep(loom.pieces, loom.revealed);
      shown = loom.pieces.map((p) => (p === null ? PLACEHOLDER : p)).join("");
      $("status").textContent = "step " + steps;
    });
  } catch (e) {
    error = String(e.message || e);
  }
  if (error !== null) {
    $("status").textContent = "error: " + error;
    document.body.dataset.state = "error";
  } else {
    // The last step's spans stay (with its reveals highlighted) when they read as the finished
    // text; otherwise (an EOS cut, a stop string) the finished text replaces them.
    if (finalText !== null && shown !== finalText) $("answer").textContent = finalText;
    $("status").textContent = "done after " + steps + " steps";
    document.body.dataset.state = "done";
  }
  $("run").disabled = false;
}

$("form").addEventListener("submit", (e) => { e.preventDefault(); run(); });
const q = new URLSearchParams(location.search);
for (const k of ["prompt", "max_tokens", "steps", "temperature", "seed", "mask"])
  if (q.has(k)) $(k).value = q.get(k);
if (q.has("mask")) document.querySelector("input[value=mask]").checked = true;
if (q.get("autorun") === "1") run();
</script>
</body>
</html>
)LOOMHTML";
}

}  // namespace loom::serve

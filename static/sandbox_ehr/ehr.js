// Sandbox EHR chart: fires hooks through the EHR's server and renders CDS cards as an EHR would.
// Every text from a card goes in with textContent; only detailHtml (rendered server-side from
// markdown with raw HTML off) is inserted as HTML.
"use strict";

const patientId = document.body.dataset.patientId;
const INDICATOR_LABEL = { critical: "Critical", warning: "Warning", info: "Info" };
const HOOK_LABEL = {
  "patient-view": "Chart opened",
  "order-select": "Order selected",
  "order-sign": "Order signing",
  "encounter-discharge": "Discharge",
};

async function api(method, path, body) {
  const options = { method, headers: { Accept: "application/json" } };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  const payload = await response.json().catch(() => ({}));
  if (!response.ok) {
    const issue = (payload.issue || [])[0] || {};
    throw new Error(issue.diagnostics || `HTTP ${response.status}`);
  }
  return payload;
}

function element(tag, attributes = {}, text) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function setStatus(id, text) {
  const node = document.getElementById(id);
  if (node) node.textContent = text;
}

// Cards

function showCards(result) {
  const container = document.getElementById("cards");
  if (result.hook === "order-sign") container.querySelector('[data-hook="order-select"]')?.remove();
  container.querySelector(`[data-hook="${result.hook}"]`)?.remove();
  const group = element("section", { class: "card-group", "data-hook": result.hook });
  group.append(element("h3", {}, HOOK_LABEL[result.hook] || result.hook));
  for (const item of result.cards) group.append(renderCard(item));
  if (!result.cards.length) group.append(element("p", { class: "empty" }, "No decision support cards."));
  for (const name of result.unavailable || []) {
    group.append(element("p", { class: "unavailable" }, `${name} is unavailable right now.`));
  }
  container.prepend(group);
  const total = container.querySelectorAll(".card:not(.decided)").length;
  setStatus("cds-status", total ? `${total} card(s) need your attention.` : "No open cards.");
}

function renderCard(item) {
  const card = item.card;
  const indicator = INDICATOR_LABEL[card.indicator] ? card.indicator : "info";
  const article = element("article", {
    class: `card card-${indicator}`,
    "data-card-uuid": card.uuid,
    "data-service": item.service,
  });
  const header = element("header");
  header.append(element("span", { class: "indicator" }, INDICATOR_LABEL[indicator]));
  header.append(element("span", { class: "summary" }, card.summary || ""));
  article.append(header);
  if (item.detailHtml) {
    const detail = element("div", { class: "detail" });
    detail.innerHTML = item.detailHtml;
    article.append(detail);
  }
  article.append(renderSource(card.source || {}));
  const actions = element("div", { class: "card-actions" });
  for (const suggestion of card.suggestions || []) actions.append(suggestionButton(article, card, suggestion));
  for (const link of card.links || []) actions.append(linkButton(card, link));
  actions.append(overrideControls(article, card));
  article.append(actions);
  article.append(element("p", { class: "card-status", role: "status" }));
  return article;
}

function renderSource(source) {
  const footer = element("footer", { class: "source" }, "Source: ");
  if (source.url && /^https?:/i.test(source.url)) {
    footer.append(element("a", { href: source.url, target: "_blank", rel: "noopener" }, source.label || source.url));
  } else {
    footer.append(document.createTextNode(source.label || "unknown"));
  }
  if (source.topic && source.topic.display) footer.append(document.createTextNode(` · ${source.topic.display}`));
  return footer;
}

function suggestionButton(article, card, suggestion) {
  const button = element("button", { type: "button", class: "suggestion" }, suggestion.label);
  if (suggestion.isRecommended) button.classList.add("recommended");
  button.addEventListener("click", async () => {
    disable(article);
    try {
      await api("POST", `/api/cards/${card.uuid}/accept`, { suggestion: suggestion.uuid });
      decided(article, `Accepted: ${suggestion.label}`);
      await refreshOrders();
    } catch (error) {
      enable(article);
      article.querySelector(".card-status").textContent = `Could not apply: ${error.message}`;
    }
  });
  return button;
}

function linkButton(card, link) {
  const anchor = element("a", { class: "link", target: "_blank", rel: "noopener" }, link.label);
  if (!/^https?:/i.test(link.url || "")) return anchor;
  anchor.href = link.url;
  if (link.type === "smart") {
    // An EHR launch, as from the chart's button: a launch context first, then the app in the iframe.
    anchor.classList.add("smart");
    anchor.addEventListener("click", (event) => {
      event.preventDefault();
      launchApp(link.url, link.appContext);
    });
  }
  return anchor;
}

// SMART app (EHR launch in the chart's iframe)

async function launchApp(appUrl, appContext) {
  const panel = document.getElementById("smart-app");
  if (!panel) return;
  panel.hidden = false;
  setStatus("launch-status", "Launching Countersign…");
  const body = { user: document.getElementById("ehr-user").value };
  if (appUrl) body.app = appUrl;
  if (typeof appContext === "string") body.appContext = appContext;
  if (document.body.dataset.encounterId) body.encounter = document.body.dataset.encounterId;
  try {
    const launched = await api("POST", `/api/patients/${patientId}/smart-launch`, body);
    document.getElementById("smart-frame").src = launched.url;
    setStatus("launch-status", "");
  } catch (error) {
    setStatus("launch-status", `Could not launch Countersign: ${error.message}`);
  }
}

document.getElementById("launch-countersign")?.addEventListener("click", () => launchApp());
document.getElementById("close-app")?.addEventListener("click", () => {
  document.getElementById("smart-frame").src = "about:blank";
  document.getElementById("smart-app").hidden = true;
});

function overrideControls(article, card) {
  const wrapper = element("div", { class: "override" });
  const open = element("button", { type: "button", class: "override-open" }, "Override");
  const form = element("form", { class: "override-form", hidden: "" });
  const reasons = card.overrideReasons || [];
  const select = element("select", { name: "reason", "aria-label": "Override reason" });
  for (const reason of reasons) select.append(element("option", { value: reason.code }, reason.display || reason.code));
  const comment = element("textarea", { name: "comment", rows: "2", placeholder: "Comment (optional)", maxlength: "1000" });
  const confirm = element("button", { type: "submit", class: "override-confirm" }, "Confirm override");
  if (reasons.length) form.append(select);
  form.append(comment, confirm);
  open.addEventListener("click", () => { form.hidden = false; open.hidden = true; });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    disable(article);
    const reason = reasons.length ? select.value : null;
    try {
      await api("POST", `/api/cards/${card.uuid}/override`, { reason, comment: comment.value });
      const shown = reasons.find((r) => r.code === reason);
      decided(article, `Overridden: ${shown ? shown.display || shown.code : "no reason given"}`);
    } catch (error) {
      enable(article);
      article.querySelector(".card-status").textContent = `Could not override: ${error.message}`;
    }
  });
  wrapper.append(open, form);
  return wrapper;
}

function disable(article) { article.querySelectorAll("button, select, textarea").forEach((n) => { n.disabled = true; }); }
function enable(article) { article.querySelectorAll("button, select, textarea").forEach((n) => { n.disabled = false; }); }

function decided(article, text) {
  article.classList.add("decided");
  article.querySelector(".card-status").textContent = text;
  article.querySelectorAll(".override-form").forEach((form) => { form.hidden = true; });
  const open = document.querySelectorAll("#cards .card:not(.decided)").length;
  setStatus("cds-status", open ? `${open} card(s) need your attention.` : "All cards handled.");
}

// Orders

async function refreshOrders() {
  const orders = await api("GET", `/api/patients/${patientId}/orders`);
  const drafts = document.getElementById("drafts");
  drafts.replaceChildren();
  for (const order of orders.drafts) {
    const item = element("li", { "data-order-id": order.id }, `${order.medication} — ${order.dosage}`);
    if (order.aiAsserted) item.append(element("span", { class: "ai-badge", title: "Changed by an accepted AI suggestion" }, "AI-suggested change"));
    drafts.append(item);
  }
  if (!orders.drafts.length) drafts.append(element("li", { class: "empty" }, "None"));
  const medications = document.querySelector("#medications ul");
  medications.replaceChildren();
  for (const order of orders.medications) medications.append(element("li", {}, `${order.medication} — ${order.dosage}`));
  if (!orders.medications.length) medications.append(element("li", { class: "empty" }, "None"));
}

async function runStep(statusId, step) {
  try {
    await step();
  } catch (error) {
    setStatus(statusId, error.message);
  }
}

document.getElementById("order-form").addEventListener("submit", (event) => {
  event.preventDefault();
  runStep("order-status", async () => {
    setStatus("order-status", "Saving draft…");
    const result = await api("POST", `/api/patients/${patientId}/drafts`, { orderable: document.getElementById("orderable").value });
    showCards(result);
    await refreshOrders();
    setStatus("order-status", "Draft saved.");
  });
});

document.getElementById("sign-orders").addEventListener("click", () => runStep("order-status", async () => {
  setStatus("order-status", "Checking orders before signing…");
  const result = await api("POST", `/api/patients/${patientId}/sign`);
  showCards(result);
  if (result.cards.length) {
    document.getElementById("complete-signing").hidden = false;
    setStatus("order-status", "Review the cards, then complete signing.");
  } else {
    await completeSigning();
  }
}));

async function completeSigning() {
  const result = await api("POST", `/api/patients/${patientId}/sign/complete`);
  document.getElementById("complete-signing").hidden = true;
  await refreshOrders();
  setStatus("order-status", `Signed ${result.signed.length} order(s).`);
}

document.getElementById("complete-signing").addEventListener("click", () => runStep("order-status", completeSigning));

document.getElementById("discharge-patient")?.addEventListener("click", () => runStep("discharge-status", async () => {
  setStatus("discharge-status", "Preparing discharge…");
  const result = await api("POST", `/api/patients/${patientId}/discharge`);
  showCards(result);
  document.getElementById("complete-discharge").hidden = false;
  setStatus("discharge-status", "Review the cards, then complete the discharge.");
}));

document.getElementById("complete-discharge")?.addEventListener("click", () => runStep("discharge-status", async () => {
  await api("POST", `/api/patients/${patientId}/discharge/complete`);
  document.getElementById("complete-discharge").hidden = true;
  document.getElementById("discharge-patient").disabled = true;
  setStatus("discharge-status", "Discharged.");
}));

runStep("cds-status", async () => {
  await refreshOrders();
  showCards(await api("POST", `/api/patients/${patientId}/patient-view`));
});

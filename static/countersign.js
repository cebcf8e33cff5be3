// Change control and promotion on the model card: each form[data-endpoint] posts its named fields
// as JSON to the API with the session's CSRF token, and the answer shows in the one status region
// (#change-result). On success the page reloads so that every status on it is current; the answer
// rides across the reload in the history entry's state (storage is denied to a cross-site EHR
// iframe; history is not) and is shown again.
(function () {
  "use strict";
  var result = document.getElementById("change-result");
  var forms = document.querySelectorAll("form[data-endpoint]");
  if (!result || !forms.length) { return; }
  var csrf = document.querySelector('meta[name="csrf-token"]');
  var kept = window.history.state;
  if (kept && kept.countersignResult) {
    result.textContent = kept.countersignResult;
    window.history.replaceState(null, "");
  }

  function fields(form) {
    var body = {};
    Array.prototype.forEach.call(form.elements, function (element) {
      if (element.name) { body[element.name] = element.value; }
    });
    return body;
  }

  function recorded(body) {
    if (body.to) { return "Recorded: " + body.from + " → " + body.to + "."; }
    var from = body.fromVersion;
    switch (body.act) {
    case "propose":
      return "Recorded: proposal #" + body.id + ", " + body.version + " for active" +
        (from ? " replacing " + from : "") + "; a different governor must approve it.";
    case "approve":
      return "Recorded: " + body.version + " is active" + (from ? ", " + from + " retired" : "") + ".";
    case "withdraw":
      return "Recorded: proposal #" + body.proposal + " withdrawn.";
    case "rollback":
      return "Recorded: rolled back to " + from + "; " + body.version + " retired.";
    default:
      return "Recorded.";
    }
  }

  function reloadWith(message, body) {
    try {
      window.history.replaceState({countersignResult: message}, "");
      window.location.reload();
    } catch (refused) {
      result.textContent = message + " Reload the page to see every status.";
      var current = document.getElementById("current-status");
      if (body.to && current) { current.textContent = body.to; }
    }
  }

  function post(form) {
    result.textContent = "Recording…";
    fetch(form.dataset.endpoint, {
      method: "POST",
      credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf ? csrf.content : ""},
      body: JSON.stringify(fields(form))
    }).then(function (response) {
      return response.json().then(function (body) { return {ok: response.ok, body: body}; });
    }).then(function (answer) {
      if (answer.ok) {
        form.reset();
        reloadWith(recorded(answer.body), answer.body);
      } else {
        var issue = (answer.body.issue || [{}])[0];
        result.textContent = "Not recorded: " + (issue.diagnostics || "the server refused the change") + ".";
      }
    }).catch(function () { result.textContent = "Not recorded: Countersign could not be reached."; });
  }

  Array.prototype.forEach.call(forms, function (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      post(form);
    });
  });
}());

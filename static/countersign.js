// Change control: posts the form as JSON to the API with the session's CSRF token, then reloads.
(function () {
  "use strict";
  var form = document.getElementById("change-control");
  if (!form) { return; }
  var result = document.getElementById("change-result");
  var csrf = document.querySelector('meta[name="csrf-token"]');
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    result.textContent = "Recording…";
    fetch(form.dataset.endpoint, {
      method: "POST",
      credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf ? csrf.content : ""},
      body: JSON.stringify({status: form.elements.status.value, reason: form.elements.reason.value})
    }).then(function (response) {
      return response.json().then(function (body) { return {ok: response.ok, body: body}; });
    }).then(function (answer) {
      if (answer.ok) {
        result.textContent = "Recorded: " + answer.body.from + " → " + answer.body.to + ".";
        document.getElementById("current-status").textContent = answer.body.to;
        form.reset();
      } else {
        var issue = (answer.body.issue || [{}])[0];
        result.textContent = "Not recorded: " + (issue.diagnostics || "the server refused the change") + ".";
      }
    }).catch(function () { result.textContent = "Not recorded: Countersign could not be reached."; });
  });
}());

// runner status pages: the "run now" buttons. The token goes in the Authorization header (never a
// cookie) and stays in this tab's sessionStorage. Messages are set as text, never as HTML.
"use strict";
(function () {
  var KEY = "runner.token";
  var box = document.getElementById("token");
  var message = document.getElementById("message");
  if (box) {
    box.value = sessionStorage.getItem(KEY) || "";
    box.addEventListener("change", function () { sessionStorage.setItem(KEY, box.value); });
  }
  function say(text, ok) {
    message.textContent = text;
    message.className = ok ? "ok" : "";
    message.hidden = false;
  }
  document.querySelectorAll("button[data-run]").forEach(function (button) {
    button.addEventListener("click", function () {
      var token = box ? box.value.trim() : "";
      if (!token) { say("Enter the token (web.token of conf/runner.yml) first."); if (box) box.focus(); return; }
      sessionStorage.setItem(KEY, token);
      button.disabled = true;
      fetch("/api/jobs/" + encodeURIComponent(button.dataset.run) + "/run", {
        method: "POST", body: "{}",
        headers: {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
      }).then(function (r) {
        return r.json().catch(function () { return {error: r.status + " " + r.statusText}; })
          .then(function (doc) { return {status: r.status, doc: doc}; });
      }).then(function (res) {
        button.disabled = false;
        if (res.status === 202) { say("Started run " + res.doc.run_id + ".", true); location.href = res.doc.page; }
        else { say("Not started (" + res.status + "): " + (res.doc.error || "")); }
      }).catch(function (err) { button.disabled = false; say("Not started: " + err); });
    });
  });
})();

// runner status pages: the action buttons (run now, re-run, pause, resume). The token goes in the
// Authorization header (never a cookie) and stays in this tab's sessionStorage. Messages are set as
// text, never as HTML.
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
  function act(button, path, body, done) {
    var token = box ? box.value.trim() : "";
    if (!token) { say("Enter the token (web.token of conf/runner.yml) first."); if (box) box.focus(); return; }
    sessionStorage.setItem(KEY, token);
    button.disabled = true;
    fetch(path, {method: "POST", body: JSON.stringify(body || {}),
                 headers: {"Authorization": "Bearer " + token, "Content-Type": "application/json"}})
      .then(function (r) {
        return r.json().catch(function () { return {error: r.status + " " + r.statusText}; })
          .then(function (doc) { return {status: r.status, doc: doc}; });
      }).then(function (res) {
        button.disabled = false;
        if (res.status < 300) { done(res.doc); }
        else { say("Not done (" + res.status + "): " + (res.doc.error || "")); }
      }).catch(function (err) { button.disabled = false; say("Not done: " + err); });
  }
  function opens(doc) { say("Started run " + doc.run_id + ".", true); location.href = doc.page; }
  function reloads(text) { return function () { say(text, true); location.reload(); }; }
  var actions = {
    run: function (b) { act(b, "/api/jobs/" + encodeURIComponent(b.dataset.run) + "/run", {}, opens); },
    rerun: function (b) { act(b, "/api/runs/" + encodeURIComponent(b.dataset.rerun) + "/rerun", {}, opens); },
    pause: function (b) {
      var reason = document.getElementById("pause-reason");
      act(b, "/api/jobs/" + encodeURIComponent(b.dataset.pause) + "/pause",
          {reason: reason ? reason.value : ""}, reloads("Paused."));
    },
    resume: function (b) {
      act(b, "/api/jobs/" + encodeURIComponent(b.dataset.resume) + "/resume", {}, reloads("Resumed."));
    }
  };
  Object.keys(actions).forEach(function (name) {
    document.querySelectorAll("button[data-" + name + "]").forEach(function (button) {
      button.addEventListener("click", function () { actions[name](button); });
    });
  });
})();

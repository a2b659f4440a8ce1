// The account page of latchkey (GET /account). Plain JavaScript: no framework, no build step.
//
// Tokens. The refresh token lives only in an HttpOnly cookie that this script cannot read.
// The access token lives only in the variable `token` below: never in localStorage,
// sessionStorage or a cookie. Every POST and DELETE carries `X-Latchkey-CSRF: 1`, which a
// form or a no-cors request from another origin cannot send.
//
// Tabs. The tabs of one browser profile share the cookie, hence one session. Every refresh
// runs under the Web Lock "latchkey-refresh" and announces the new access token on the
// BroadcastChannel "latchkey"; the other tabs adopt it, and a tab that gets the lock right
// after another one refreshed uses that token instead of refreshing again. Sign-in and
// sign-out are announced too, and every tab follows at once.
"use strict";

const MIN_REFRESH_MS = 500; // never refresh sooner than this after getting a token
const RETRY_MS = 5000; // after a failed refresh (no answer, 5xx), try again this much later
const ENDED = "Your session has ended: it was signed out or revoked elsewhere, or it expired. "
  + "Sign in again.";
const OFFLINE = "The server could not be reached. Check your connection and try again.";
const SIGNED_OUT = "You are signed out.";
const NOT_CONFIRMED = "Nothing was changed: this needs your password again.";
// RFC 9470: the operation needs a more recent sign-in than this session's.
const STEP_UP = "insufficient_user_authentication";

const $ = (id) => document.getElementById(id);
const channel = "BroadcastChannel" in window ? new BroadcastChannel("latchkey") : null;

let token = null; // the access token: in memory only
let issuedAt = 0; // when it was issued, expiresAt when it expires (Date.now() milliseconds)
let expiresAt = 0;
let timer = 0;
let refreshing = null; // this tab's refresh in flight, shared by every caller
let signedIn = false;
let refreshes = 0; // refreshes this tab made (shown as <body data-refreshes> for tests)

class ApiError extends Error {
  constructor(status, body) {
    super(body.error_description || `The server answered ${status}.`);
    this.status = status;
    this.code = body.error || "";
  }
}

class SessionEnded extends Error {}

// --- HTTP --------------------------------------------------------------------------------

function send(method, path, { body, bearer = true } = {}) {
  const headers = {};
  if (method !== "GET") headers["X-Latchkey-CSRF"] = "1";
  if (bearer && token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  return fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    cache: "no-store",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

async function failure(response) {
  let body = {};
  try {
    body = await response.json();
  } catch {
    // not JSON: the generic message
  }
  return new ApiError(response.status, body);
}

function needsRecentSignIn(response) {
  return response.status === 401
    && (response.headers.get("WWW-Authenticate") || "").includes(STEP_UP);
}

// A call with the access token. On a 401 it refreshes once and tries again; when the session
// is over it shows the sign-in form and throws SessionEnded. When the operation needs a more
// recent sign-in, the password proves it again (`password`, or asked for in a dialog) and the
// call is tried once more. Other failures throw ApiError.
async function api(method, path, body, { password = null } = {}) {
  let response = await send(method, path, { body });
  if (response.status === 401 && !needsRecentSignIn(response)) {
    const result = await refresh();
    if (!result.ok) {
      if (result.ended) {
        end(result.message || ENDED, { tell: result.message || ENDED });
        throw new SessionEnded();
      }
      throw new ApiError(0, { error_description: result.message });
    }
    response = await send(method, path, { body });
  }
  if (needsRecentSignIn(response)) {
    await (password === null ? askToReauthenticate() : reauthenticate(password));
    response = await send(method, path, { body });
  }
  if (response.ok) return response;
  const error = await failure(response);
  if (response.status === 401 || error.code === "account_disabled") {
    const message = response.status === 401 ? ENDED : error.message;
    end(message, { tell: message });
    throw new SessionEnded();
  }
  throw error;
}

// --- tokens ------------------------------------------------------------------------------

function accept(pair) {
  token = pair.access_token;
  issuedAt = Date.now();
  // Tokens are issued on whole seconds: one may have up to a second less than expires_in.
  expiresAt = issuedAt + Math.max(0, pair.expires_in - 1) * 1000;
  schedule();
}

function adopt(message) {
  ({ token, issuedAt, expiresAt } = message);
  schedule();
}

function forget() {
  token = null;
  clearTimeout(timer);
}

// When to renew the token: at three quarters of its lifetime, not sooner than MIN_REFRESH_MS.
function renewAt() {
  return issuedAt + Math.max(MIN_REFRESH_MS, (expiresAt - issuedAt) * 0.75);
}

function schedule() {
  clearTimeout(timer);
  timer = setTimeout(refreshOrEnd, Math.max(0, renewAt() - Date.now()));
}

function announce(message) {
  if (channel) channel.postMessage(message);
}

function withLock(work) {
  // Web Locks exist in secure contexts (https, http://localhost); elsewhere the server's
  // grace window still keeps two tabs refreshing at once on one session.
  return navigator.locks ? navigator.locks.request("latchkey-refresh", work) : work();
}

// Renew the access token with the refresh cookie. Resolves to {ok: true}, or {ok: false,
// ended, message}: ended when there is no live session (401, 403), else the server could
// not be reached or failed (try again later). One refresh at a time per tab and per browser.
function refresh() {
  if (!refreshing) {
    const before = token;
    refreshing = withLock(() => renew(before)).finally(() => {
      refreshing = null;
    });
  }
  return refreshing;
}

async function renew(before) {
  if (token && token !== before && Date.now() < renewAt()) {
    return { ok: true }; // another tab refreshed while this one waited for the lock
  }
  let response;
  try {
    response = await send("POST", "/auth/refresh", { bearer: false });
  } catch {
    return { ok: false, ended: false, message: OFFLINE };
  }
  if (response.ok) {
    let pair;
    try {
      pair = await response.json();
    } catch {
      return { ok: false, ended: false, message: OFFLINE }; // not ours (a proxy's page?): retry
    }
    accept(pair);
    refreshes += 1;
    document.body.dataset.refreshes = String(refreshes);
    announce({ type: "token", token, issuedAt, expiresAt });
    return { ok: true };
  }
  const error = await failure(response);
  if (response.status === 401) return { ok: false, ended: true, message: null };
  return { ok: false, ended: response.status === 403, message: error.message };
}

async function refreshOrEnd() {
  const result = await refresh();
  if (result.ok) return true;
  if (result.ended) {
    end(result.message || ENDED, { tell: result.message || ENDED });
  } else {
    say(result.message, true);
    clearTimeout(timer);
    timer = setTimeout(refreshOrEnd, RETRY_MS);
  }
  return false;
}

// The password proved again (POST /auth/reauthenticate): a new access token of this same
// session, whose sign-in time is now. Throws ApiError (wrong password, too many attempts) or
// SessionEnded.
async function reauthenticate(password) {
  const prove = () => send("POST", "/auth/reauthenticate", { body: { password } });
  let response = await prove();
  if (response.status === 401 && (await refresh()).ok) response = await prove();
  if (response.status === 401) {
    end(ENDED, { tell: ENDED });
    throw new SessionEnded();
  }
  if (!response.ok) {
    const error = await failure(response);
    const wait = response.headers.get("Retry-After");
    if (response.status === 429 && wait) error.message = `${error.message} Wait ${wait} s.`;
    throw error;
  }
  accept(await response.json());
  announce({ type: "token", token, issuedAt, expiresAt });
}

// The dialog that asks for the password; resolves once it is proved, throws ApiError when
// the user cancels.
function askToReauthenticate() {
  const dialog = $("reauth");
  const form = $("reauth-form");
  const input = $("reauth-password");
  const box = $("reauth-message");
  box.textContent = "";
  form.reset();
  return new Promise((resolve, reject) => {
    const submit = async (event) => {
      event.preventDefault();
      if (!input.value) {
        box.textContent = "Enter your password.";
        input.focus();
        return;
      }
      const button = form.querySelector("button[type=submit]");
      button.disabled = true;
      try {
        await reauthenticate(input.value);
      } catch (error) {
        if (error instanceof SessionEnded) {
          finish();
          reject(error);
          return;
        }
        box.textContent = error.message;
        input.select();
        input.focus();
        return;
      } finally {
        button.disabled = false;
      }
      finish();
      resolve();
    };
    const cancel = (event) => {
      event.preventDefault();
      finish();
      reject(new ApiError(0, { error_description: NOT_CONFIRMED }));
    };
    function finish() {
      form.removeEventListener("submit", submit);
      $("reauth-cancel").removeEventListener("click", cancel);
      dialog.removeEventListener("cancel", cancel);
      form.reset();
      dialog.close();
    }
    form.addEventListener("submit", submit);
    $("reauth-cancel").addEventListener("click", cancel);
    dialog.addEventListener("cancel", cancel); // Escape
    dialog.showModal();
    input.focus();
  });
}

// --- views -------------------------------------------------------------------------------

function setView(state) {
  document.body.dataset.state = state;
  $("loading").hidden = state !== "loading";
  $("signin").hidden = state !== "signed-out";
  $("account").hidden = state !== "signed-in";
}

function say(text, isError = false) {
  const box = $("message");
  box.textContent = text || "";
  box.classList.toggle("error", Boolean(isError));
}

function report(error) {
  if (error instanceof SessionEnded) return; // the sign-in form says so already
  if (!(error instanceof ApiError)) console.error(error);
  say(error instanceof ApiError ? error.message : OFFLINE, true);
}

function showSignIn(message, isError = false) {
  signedIn = false;
  const dialog = $("reauth");
  if (dialog.open) dialog.dispatchEvent(new Event("cancel")); // its caller gives up
  $("me-username").textContent = "";
  $("me-scope").textContent = "";
  $("sessions").replaceChildren();
  $("password-form").reset();
  delete document.body.dataset.sid;
  setView("signed-out");
  say(message, isError);
  $("username").focus();
}

// Signed out (by the user, or the session ended): forget the token, show the sign-in form
// with `message`, and send the other tabs the message `tell` (when given). Once only: a
// late answer (say, a refresh that lost the race with another tab's sign-out) changes nothing.
function end(message, { tell = null, error = true } = {}) {
  if (!signedIn && token === null) return;
  forget();
  showSignIn(message, error);
  if (tell) announce({ type: "signed-out", message: tell, error });
}

async function showAccount() {
  signedIn = true;
  setView("signed-in");
  try {
    const me = await (await api("GET", "/auth/me")).json();
    $("me-username").textContent = me.username;
    $("me-scope").textContent = me.scope || "(none)";
    document.body.dataset.sid = me.sid;
    await loadSessions();
  } catch (error) {
    report(error);
  }
}

// --- sessions ----------------------------------------------------------------------------

const BROWSERS = [
  ["Edg/", "Edge"], ["OPR/", "Opera"], ["Firefox/", "Firefox"], ["Chrome/", "Chrome"],
  ["Safari/", "Safari"], ["curl/", "curl"], ["python-httpx/", "Python httpx"],
];
const SYSTEMS = [
  ["Android", "Android"], ["iPhone", "iPhone"], ["iPad", "iPad"], ["Windows", "Windows"],
  ["Mac OS X", "macOS"], ["CrOS", "ChromeOS"], ["Linux", "Linux"],
];

function device(userAgent) {
  if (!userAgent) return "Unknown device";
  const browser = BROWSERS.find(([mark]) => userAgent.includes(mark));
  const system = SYSTEMS.find(([mark]) => userAgent.includes(mark));
  if (!browser && !system) {
    return userAgent.length > 40 ? `${userAgent.slice(0, 39)}…` : userAgent;
  }
  return `${browser ? browser[1] : "Browser"}${system ? ` on ${system[1]}` : ""}`;
}

function when(seconds) {
  return new Date(seconds * 1000).toLocaleString(undefined, {
    dateStyle: "medium",
    timeStyle: "short",
  });
}

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}

function timeCell(seconds) {
  const td = document.createElement("td");
  const time = document.createElement("time");
  time.dateTime = new Date(seconds * 1000).toISOString();
  time.textContent = when(seconds);
  td.append(time);
  return td;
}

function sessionRow(session) {
  const row = document.createElement("tr");
  row.dataset.sid = session.id;
  const name = device(session.user_agent);
  const deviceCell = cell(name);
  if (session.user_agent) deviceCell.title = session.user_agent;
  row.append(
    deviceCell,
    cell(session.address || "unknown"),
    timeCell(session.created_at),
    timeCell(session.last_used_at),
  );
  const action = document.createElement("td");
  if (session.current) {
    row.className = "current";
    const badge = document.createElement("span");
    badge.className = "badge";
    badge.textContent = "This device";
    action.append(badge);
  } else {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "danger";
    button.textContent = "Revoke";
    button.setAttribute("aria-label", `Revoke: ${name}, last used ${when(session.last_used_at)}`);
    button.addEventListener("click", () => revoke(session.id, name, button));
    action.append(button);
  }
  row.append(action);
  return row;
}

async function loadSessions() {
  const { sessions } = await (await api("GET", "/auth/sessions")).json();
  sessions.sort((a, b) => b.current - a.current || b.last_used_at - a.last_used_at);
  $("sessions").replaceChildren(...sessions.map(sessionRow));
}

async function revoke(sid, name, button) {
  button.disabled = true;
  try {
    await api("DELETE", `/auth/sessions/${encodeURIComponent(sid)}`);
    say(`The session of ${name} is revoked.`);
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 404)) {
      report(error);
      button.disabled = false;
      return;
    }
    say("That session had already ended.");
  }
  $("sessions-title").focus(); // the button goes away with its row
  await loadSessions().catch(report);
}

// --- actions -----------------------------------------------------------------------------

async function busy(button, work) {
  button.disabled = true;
  try {
    await work();
  } catch (error) {
    report(error);
  } finally {
    button.disabled = false;
  }
}

async function signIn(event) {
  event.preventDefault();
  const username = $("username");
  const password = $("password");
  const missing = [username, password].find((input) => !input.value);
  if (missing) {
    say("Enter your username and password.", true);
    missing.focus();
    return;
  }
  const body = { username: username.value, password: password.value, cookie: true };
  const response = await send("POST", "/auth/login", { body, bearer: false });
  if (!response.ok) {
    const error = await failure(response);
    const wait = response.headers.get("Retry-After");
    say(response.status === 429 && wait ? `${error.message} Wait ${wait} s.` : error.message, true);
    password.select();
    password.focus();
    return;
  }
  accept(await response.json());
  password.value = "";
  announce({ type: "token", token, issuedAt, expiresAt });
  say("");
  await showAccount();
  $("me-title").focus();
}

async function signOut() {
  // Under the refresh lock: no tab rotates the cookie while it is being revoked.
  const response = await withLock(() => send("POST", "/auth/logout", { bearer: false }));
  if (!response.ok && response.status !== 401) {
    // 429, 503: the session is still live and the cookie kept; the user can try again.
    const error = await failure(response);
    error.message = `Signing out failed: you are still signed in. ${error.message}`;
    throw error;
  }
  end(SIGNED_OUT, { tell: "You signed out in another tab.", error: false });
}

async function signOutEverywhere() {
  await api("POST", "/auth/logout-all");
  const tell = "You signed out everywhere in another tab.";
  end("You are signed out on every device.", { tell, error: false });
}

async function changePassword(event) {
  event.preventDefault();
  const current = $("current-password");
  const next = $("new-password");
  const again = $("confirm-password");
  const missing = [current, next, again].find((input) => !input.value);
  if (missing) {
    say("Fill in your current password and the new one twice.", true);
    missing.focus();
    return;
  }
  if (next.value !== again.value) {
    say("The two new passwords differ.", true);
    again.focus();
    return;
  }
  try {
    const body = { current_password: current.value, new_password: next.value };
    // A sign-in too long ago: the current password typed here proves it again.
    await api("POST", "/auth/password", body, { password: current.value });
  } catch (error) {
    report(error);
    if (error instanceof ApiError) (error.code === "invalid_grant" ? current : next).focus();
    return;
  }
  event.target.reset();
  say("Your password is changed. Your other sessions have ended.");
  await loadSessions().catch(report);
}

// --- start -------------------------------------------------------------------------------

function onMessage({ data }) {
  if (data.type === "token") {
    adopt(data);
    if (!signedIn) {
      say("");
      showAccount();
    }
  } else if (data.type === "signed-out") {
    end(data.message, { error: data.error });
  }
}

async function start() {
  const form = $("signin-form");
  form.addEventListener("submit", (event) =>
    busy(form.querySelector("button"), () => signIn(event)),
  );
  const passwordForm = $("password-form");
  passwordForm.addEventListener("submit", (event) =>
    busy(passwordForm.querySelector("button"), () => changePassword(event)),
  );
  $("signout").addEventListener("click", (event) => busy(event.currentTarget, signOut));
  $("signout-all").addEventListener("click", (event) =>
    busy(event.currentTarget, signOutEverywhere),
  );
  $("reload-sessions").addEventListener("click", (event) =>
    busy(event.currentTarget, loadSessions),
  );
  if (channel) channel.addEventListener("message", onMessage);
  // Browsers slow down or stop the timers of hidden tabs and of a computer asleep: when the
  // page is seen again and its renewal time has passed, renew now instead of on the next 401.
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && token && Date.now() >= renewAt()) {
      refreshOrEnd();
    }
  });
  window.latchkeyRefreshNow = refreshOrEnd; // for tests: refresh now, resolves to true or false

  const result = await refresh();
  if (signedIn) return; // another tab's sign-in or refresh arrived first
  if (result.ok) {
    await showAccount();
  } else {
    showSignIn(result.message, Boolean(result.message)); // no message when merely signed out
  }
}

start();

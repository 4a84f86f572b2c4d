// bucketreel time zone, on every page: tells the broker the browser's IANA time zone in the
// bucketreel_tz cookie, so that pages show times (and cut days) in it, unless the organisation
// set a zone of its own. Every visit starts at the sign-in page, which sets it before any page
// with times is shown; a change of zone shows from the next page on.
"use strict";

(function () {
  let zone = "";
  try {
    zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
  } catch (e) {
    return;
  }
  if (!/^[A-Za-z0-9_+\-\/]{1,64}$/.test(zone)) return;
  if (document.cookie.split("; ").includes("bucketreel_tz=" + zone)) return;
  const secure = location.protocol === "https:" ? "; Secure" : "";
  document.cookie = "bucketreel_tz=" + zone + "; Path=/; Max-Age=31536000; SameSite=Lax" + secure;
})();

// The demo's user switch: whom the EHR signs in when it launches a SMART app. Kept per browser.
"use strict";

(() => {
  const select = document.getElementById("ehr-user");
  if (!select) return;
  const saved = localStorage.getItem("sandbox-ehr-user");
  if (saved && [...select.options].some((option) => option.value === saved)) select.value = saved;
  select.addEventListener("change", () => localStorage.setItem("sandbox-ehr-user", select.value));
})();

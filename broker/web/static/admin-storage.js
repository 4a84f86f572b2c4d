// bucketreel Storage page: a Copy button beside each generated policy. Without script the
// buttons stay hidden and the policies are plain text to select.
"use strict";

(function () {
  for (const button of document.querySelectorAll("button.copy[data-copy]")) {
    const source = document.getElementById(button.dataset.copy);
    if (!source || !navigator.clipboard) continue;
    button.hidden = false;
    button.addEventListener("click", function () {
      navigator.clipboard.writeText(source.textContent).then(
        function () { button.textContent = "Copied"; },
        function () { button.textContent = "Select the text to copy it"; },
      );
    });
  }
})();

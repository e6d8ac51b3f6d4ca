// Launch form: selects keep their option texts short (they must fit a phone's width); the chosen
// option's whole description shows under its select and follows every change.
const details = JSON.parse(document.getElementById("option-details").textContent);
const form = document.getElementById("launch");

for (const [name, texts] of Object.entries(details)) {
  const select = form.elements[name];
  if (!select) continue;
  const line = document.createElement("div");
  line.className = "help option-detail";
  line.dataset.for = name;
  select.after(line);
  const show = () => { line.textContent = texts[select.value] || ""; };
  select.addEventListener("change", show);
  show();
}

/* citesearch embeddable search box for other internal pages.
 *
 *   <div data-citesearch></div>
 *   <script src="http://search.internal:8000/static/embed.js" defer></script>
 *
 * Each element with a data-citesearch attribute becomes a search box that asks the citesearch API (the origin this
 * script was loaded from, or the script's data-api attribute) and shows the answer and the top passages; every
 * citation links to the document view on the citesearch site. The embedding page's origin must be listed in
 * CITESEARCH_CORS_ORIGINS. All text is inserted with textContent: document text is never parsed as HTML.
 * The per-document cap of the passages comes from GET /page-config, as on the search page (2 if that request fails).
 */
(function () {
  "use strict";

  var script = document.currentScript;
  var api = (script && script.getAttribute("data-api")) || (script ? new URL("..", script.src).href : "/");
  if (api.charAt(api.length - 1) !== "/") api += "/";

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function docLink(docId, start, end, text, query) {
    var params = new URLSearchParams({ start: String(start), end: String(end), q: query });
    var link = el("a", "cs-link", text);
    link.href = api + "#/doc/" + encodeURIComponent(docId) + "?" + params.toString();
    link.target = "_blank";
    link.rel = "noopener";
    return link;
  }

  function request(path, options) {
    return fetch(api + path, options).then(function (response) {
      return response.json().then(function (body) {
        if (!response.ok) throw new Error(body && body.error ? body.error.message : "HTTP " + response.status);
        return body;
      });
    });
  }

  // The configuration the search page reads (GET /page-config), fetched once for every box on the page. If it
  // cannot be read (an older service, a network error), fall back to two passages per document.
  var FALLBACK_PER_DOC_CAP = 2;
  var configPromise = null;
  function pageConfig() {
    if (!configPromise) {
      configPromise = request("page-config").then(function (config) {
        return { perDocCap: config.per_doc_cap };  // null: no cap from the page, the API's own default applies
      }, function () {
        return { perDocCap: FALLBACK_PER_DOC_CAP };
      });
    }
    return configPromise;
  }

  function renderAnswer(box, data, query) {
    box.textContent = "";
    if (data.answer === null) {
      box.appendChild(el("p", "cs-none", "No answer found."));
      return;
    }
    var byNumber = {};
    data.citations.forEach(function (c) { byNumber[c.number] = c; });
    var p = el("p", "cs-answer-text");
    data.sentences.forEach(function (s) {
      var c = byNumber[s.citation];
      p.appendChild(document.createTextNode(s.text + " "));
      var marker = docLink(c.doc_id, c.char_start, c.char_end, "[" + s.citation + "]", query);
      marker.title = c.label + " — " + c.title;
      p.appendChild(marker);
      p.appendChild(document.createTextNode(" "));
    });
    box.appendChild(p);
  }

  function renderPassages(list, data, query) {
    list.textContent = "";
    data.results.forEach(function (hit) {
      var item = el("li", "cs-result");
      var c = hit.citation;
      var best = hit.highlight.length ? hit.highlight[0] : { start: 0, end: 0 };
      // Show only the best sentence (code point offsets; Array.from splits by code point).
      var chars = Array.from(hit.text);
      var sentence = chars.slice(best.start, best.end).join("") || chars.slice(0, 200).join("");
      item.appendChild(el("span", "cs-label", hit.label));
      item.appendChild(document.createTextNode(" "));
      item.appendChild(docLink(c.doc_id, c.char_start + best.start, c.char_start + best.end,
                               c.title || c.doc_id, query));
      item.appendChild(el("div", "cs-snippet", sentence));
      list.appendChild(item);
    });
  }

  function mount(root) {
    if (root.getAttribute("data-citesearch-mounted")) return;
    root.setAttribute("data-citesearch-mounted", "1");
    root.classList.add("cs-box");
    var form = el("form", "cs-form");
    form.setAttribute("role", "search");
    var input = el("input", "cs-input");
    input.type = "search";
    input.required = true;
    input.placeholder = root.getAttribute("data-placeholder") || "Search the news archive";
    input.setAttribute("aria-label", "Search question");
    var button = el("button", "cs-button", "Search");
    button.type = "submit";
    form.appendChild(input);
    form.appendChild(button);
    var status = el("p", "cs-status");
    status.setAttribute("role", "status");
    var answer = el("div", "cs-answer");
    var list = el("ol", "cs-results");
    root.appendChild(form);
    root.appendChild(status);
    root.appendChild(answer);
    root.appendChild(list);
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var query = input.value;
      if (!query.trim()) return;
      status.textContent = "Searching…";
      answer.textContent = "";
      list.textContent = "";
      var k = root.getAttribute("data-k") || "5";
      Promise.all([
        request("ask", { method: "POST", headers: { "Content-Type": "application/json" },
                         body: JSON.stringify({ question: query }) }),
        pageConfig().then(function (config) {
          var params = new URLSearchParams({ q: query, k: k });
          if (config.perDocCap) params.set("per_doc_cap", String(config.perDocCap));
          return request("search?" + params.toString());
        }),
      ]).then(function (results) {
        renderAnswer(answer, results[0], query);
        renderPassages(list, results[1], query);
        status.textContent = results[1].results.length + " passages";
      }, function (error) {
        status.textContent = "Search failed: " + error.message;
      });
    });
  }

  function init() {
    if (!document.querySelector("link[data-citesearch-css]")) {
      var css = document.createElement("link");
      css.rel = "stylesheet";
      css.href = api + "static/embed.css";
      css.setAttribute("data-citesearch-css", "1");
      document.head.appendChild(css);
    }
    var roots = document.querySelectorAll("[data-citesearch]");
    if (roots.length) pageConfig();  // ahead of the first question
    Array.prototype.forEach.call(roots, mount);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();

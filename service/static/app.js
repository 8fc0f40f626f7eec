/* citesearch search page.
 *
 * Two views in one page, chosen by the URL hash so the browser's Back button works:
 *   #/search?q=...                       the answer, its citations and the ranked passages
 *   #/doc/<doc_id>?start=S&end=E&q=...   a stored document with the cited span marked and scrolled into view
 *
 * Safety: document text is never parsed as HTML. Every piece of text goes into the page through textContent or
 * text nodes, so a passage holding <script> or <img onerror=...> is shown as those characters and never runs.
 *
 * Offsets: the API counts characters as Unicode code points (Python strings); JavaScript strings count UTF-16
 * units, which differ after any character outside the Basic Multilingual Plane (most emoji). Spans are converted
 * with codePointOffsets() before slicing, so a mark after an emoji still covers exactly the quoted text.
 */
(function () {
  "use strict";

  var PAGE_SIZE = 10;
  var state = { perDocCap: 2, query: "", offset: 0, requestId: 0 };

  function $(id) { return document.getElementById(id); }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  /* UTF-16 index of each code point boundary: units[i] is where code point i starts; units[n] == text.length. */
  function codePointOffsets(text) {
    var units = [0];
    for (var i = 0; i < text.length; i++) {
      var c = text.charCodeAt(i);
      if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
        var d = text.charCodeAt(i + 1);
        if (d >= 0xdc00 && d <= 0xdfff) i++;
      }
      units.push(i + 1);
    }
    return units;
  }

  function unitAt(units, cp) {
    if (cp <= 0) return 0;
    if (cp >= units.length) return units[units.length - 1];
    return units[cp];
  }

  /* Append text to parent, wrapping the code-point spans [{start, end}] (sorted, relative to text) in <mark>. */
  function appendMarked(parent, text, spans, markClass) {
    var units = codePointOffsets(text);
    var pos = 0;
    var marks = [];
    (spans || []).forEach(function (span) {
      var s = Math.max(unitAt(units, span.start), pos);
      var e = unitAt(units, span.end);
      if (e <= s) return;
      if (s > pos) parent.appendChild(document.createTextNode(text.slice(pos, s)));
      var mark = el("mark", markClass || "", text.slice(s, e));
      parent.appendChild(mark);
      marks.push(mark);
      pos = e;
    });
    if (pos < text.length) parent.appendChild(document.createTextNode(text.slice(pos)));
    return marks;
  }

  function docHash(docId, start, end, query) {
    var params = new URLSearchParams();
    if (start !== undefined && start !== null) params.set("start", String(start));
    if (end !== undefined && end !== null) params.set("end", String(end));
    if (query) params.set("q", query);
    return "#/doc/" + encodeURIComponent(docId) + "?" + params.toString();
  }

  function searchHash(query) {
    return "#/search?" + new URLSearchParams({ q: query }).toString();
  }

  function setStatus(text, isError) {
    var status = $("status");
    status.textContent = text || "";
    status.classList.toggle("error", !!isError);
  }

  function setVersion(version) {
    if (version) $("index-version").textContent = "index " + version;
  }

  /* fetch JSON; on an API error, throw an Error carrying the API's message and field. */
  function fetchJSON(url, options) {
    return fetch(url, options).then(function (response) {
      return response.json().catch(function () { return null; }).then(function (body) {
        if (!response.ok) {
          var detail = body && body.error ? body.error : null;
          var message = detail ? (detail.field ? detail.field + ": " : "") + detail.message : "HTTP " + response.status;
          var error = new Error(message);
          error.status = response.status;
          throw error;
        }
        return body;
      });
    });
  }

  function postJSON(url, payload) {
    return fetchJSON(url, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(payload),
    });
  }

  /* ---------------------------------------------------------------------------------------------------------- */
  /* Search view                                                                                                */
  /* ---------------------------------------------------------------------------------------------------------- */

  function showView(name) {
    $("search-view").hidden = name !== "search";
    $("doc-view").hidden = name !== "doc";
  }

  function clearResults() {
    $("answer").hidden = true;
    $("results").hidden = true;
    $("answer-text").textContent = "";
    $("citations").textContent = "";
    $("result-list").textContent = "";
    $("more").hidden = true;
  }

  function runSearch(query) {
    var requestId = ++state.requestId;  // a slower earlier request must not overwrite a newer one
    state.query = query;
    state.offset = 0;
    $("q").value = query;
    clearResults();
    setStatus("Searching…");
    var searchUrl = searchUrlFor(query, 0);
    var asking = postJSON("ask", { question: query });
    var searching = fetchJSON(searchUrl);
    Promise.allSettled([asking, searching]).then(function (outcomes) {
      if (requestId !== state.requestId) return;
      var ask = outcomes[0], search = outcomes[1];
      if (ask.status === "rejected" && search.status === "rejected") {
        setStatus("Search failed: " + search.reason.message, true);
        return;
      }
      if (ask.status === "fulfilled") renderAnswer(ask.value, query);
      if (search.status === "fulfilled") renderResults(search.value, query, false);
      var count = search.status === "fulfilled" ? search.value.results.length : 0;
      var parts = [];
      if (ask.status === "fulfilled") parts.push(ask.value.answer ? "Answer found." : "No answer.");
      parts.push(count + (count === 1 ? " passage" : " passages") + ".");
      if (search.status === "fulfilled") parts.push("(" + Math.round(search.value.took_ms) + " ms)");
      if (ask.status === "rejected") parts.push("Answer failed: " + ask.reason.message);
      if (search.status === "rejected") parts.push("Passages failed: " + search.reason.message);
      setStatus(parts.join(" "), ask.status === "rejected" || search.status === "rejected");
    });
  }

  function searchUrlFor(query, offset) {
    var params = new URLSearchParams({ q: query, k: String(PAGE_SIZE), offset: String(offset) });
    if (state.perDocCap) params.set("per_doc_cap", String(state.perDocCap));
    return "search?" + params.toString();
  }

  function renderAnswer(data, query) {
    setVersion(data.index_version);
    var box = $("answer");
    var textBox = $("answer-text");
    var note = $("answer-note");
    box.hidden = false;
    $("answer-heading").textContent = data.reader_question ? "What readers said" : "Answer";
    if (data.answer === null) {
      note.hidden = true;
      textBox.className = "answer-text no-answer";
      textBox.textContent = "No answer in the indexed documents. " + (data.reason || "");
      return;
    }
    textBox.className = "answer-text";
    note.hidden = !data.reader_question;
    note.textContent = "Quoted from reader comments, not from the articles.";
    var byNumber = {};
    data.citations.forEach(function (c) { byNumber[c.number] = c; });
    data.sentences.forEach(function (sentence, i) {
      var citation = byNumber[sentence.citation];
      if (i > 0) textBox.appendChild(document.createTextNode(" "));
      var quote = el("span", "answer-sentence" + (citation && citation.reader_comment ? " from-reader" : ""),
                     sentence.text);
      textBox.appendChild(quote);
      textBox.appendChild(document.createTextNode(" "));
      textBox.appendChild(citationMarker(citation, sentence.citation, query));
    });
    var list = $("citations");
    data.citations.forEach(function (c) {
      var item = el("li", "citation");
      item.id = "citation-" + c.number;
      var link = el("a", "citation-link", "[" + c.number + "]");
      link.href = docHash(c.doc_id, c.char_start, c.char_end, query);
      link.setAttribute("aria-label", "Open citation " + c.number + " in " + (c.title || c.doc_id));
      item.appendChild(link);
      item.appendChild(document.createTextNode(" "));
      item.appendChild(el("span", "badge " + (c.reader_comment ? "badge-reader" : "badge-" + c.section),
                          c.label));  /* "Reader comment 3, by NAME (DATE), reply to comment 1" */
      item.appendChild(document.createTextNode(" "));
      item.appendChild(el("span", "citation-title", c.title || c.doc_id));
      item.appendChild(el("span", "citation-where", " · " + c.source + ", chars " + c.char_start + "–" + c.char_end));
      list.appendChild(item);
    });
  }

  function citationMarker(citation, number, query) {
    if (!citation) return el("span", "marker", "[" + number + "]");
    var link = el("a", "marker", "[" + number + "]");
    link.href = docHash(citation.doc_id, citation.char_start, citation.char_end, query);
    link.title = citation.label +
      " — " + (citation.title || citation.doc_id);
    link.setAttribute("aria-label", "Citation " + number + ": " + link.title);
    return link;
  }

  function renderResults(data, query, append) {
    setVersion(data.index_version);
    var list = $("result-list");
    if (!append) list.textContent = "";
    $("results").hidden = false;
    if (!append && data.results.length === 0) {
      list.appendChild(el("li", "empty", "No passages found."));
    }
    data.results.forEach(function (hit) { list.appendChild(resultItem(hit, query)); });
    state.offset = data.offset + data.results.length;
    $("more").hidden = data.results.length < data.k;
  }

  function resultItem(hit, query) {
    var c = hit.citation;
    var item = el("li", "result");
    var head = el("div", "result-head");
    head.appendChild(el("span", "rank", "#" + hit.rank));
    head.appendChild(el("span", "badge " + (c.section === "comment" ? "badge-reader" : "badge-" + c.section),
                        hit.label));
    head.appendChild(el("span", "result-title", c.title || c.doc_id));
    head.appendChild(el("span", "score", "score " + Number(hit.score).toFixed(3)));
    item.appendChild(head);
    var passage = el("p", "passage");
    appendMarked(passage, hit.text, hit.highlight, "hl");
    item.appendChild(passage);
    var best = hit.highlight && hit.highlight.length ? hit.highlight[0] : null;
    var start = best ? c.char_start + best.start : c.char_start;
    var end = best ? c.char_start + best.end : c.char_end;
    var open = el("a", "open-doc", "Show in document");
    open.href = docHash(c.doc_id, start, end, query);
    open.setAttribute("aria-label", "Show passage " + hit.rank + " in " + (c.title || c.doc_id));
    var where = el("p", "result-where");
    where.appendChild(open);
    where.appendChild(document.createTextNode(" · " + c.source + ", chars " + c.char_start + "–" + c.char_end));
    item.appendChild(where);
    return item;
  }

  function loadMore() {
    var query = state.query;
    var requestId = state.requestId;
    setStatus("Loading more…");
    fetchJSON(searchUrlFor(query, state.offset)).then(function (data) {
      if (requestId !== state.requestId) return;
      renderResults(data, query, true);
      setStatus(state.offset + " passages.");
    }, function (error) { setStatus("Loading more failed: " + error.message, true); });
  }

  /* ---------------------------------------------------------------------------------------------------------- */
  /* Document view                                                                                              */
  /* ---------------------------------------------------------------------------------------------------------- */

  /* The document cut into labelled parts (and the unlabelled text between them: headline, page chrome). */
  function segments(doc) {
    var out = [];
    var pos = 0;
    var length = codePointOffsets(doc.text).length - 1;
    doc.parts.forEach(function (part) {
      if (part.char_start > pos) out.push({ start: pos, end: part.char_start, label: null, section: "other" });
      out.push({ start: part.char_start, end: part.char_end, label: part.label, section: part.section });
      pos = Math.max(pos, part.char_end);
    });
    if (pos < length) out.push({ start: pos, end: length, label: null, section: "other" });
    return out;
  }

  function renderDocument(doc, start, end, query) {
    setVersion(doc.index_version);
    $("doc-title").textContent = doc.title || doc.doc_id;
    var meta = $("doc-meta");
    meta.textContent = doc.source + " · " + doc.doc_id + " · index " + doc.index_version;
    var body = $("doc-body");
    body.textContent = "";
    var units = codePointOffsets(doc.text);
    var marks = [];
    var hasSpan = start !== null && end !== null && end > start;
    segments(doc).forEach(function (seg) {
      var text = doc.text.slice(unitAt(units, seg.start), unitAt(units, seg.end));
      if (seg.section === "other" && !text.trim()) return;
      var part = el("section", "part part-" + seg.section);
      if (seg.label) part.appendChild(el("h2", "part-label", seg.label));
      else part.setAttribute("aria-label", "Other page text");
      var textBox = el("div", "part-text");
      var spans = [];
      if (hasSpan && start < seg.end && end > seg.start) {
        spans.push({ start: Math.max(start, seg.start) - seg.start, end: Math.min(end, seg.end) - seg.start });
      }
      marks = marks.concat(appendMarked(textBox, text, spans, "cited"));
      part.appendChild(textBox);
      body.appendChild(part);
    });
    $("back-link").href = query ? searchHash(query) : "#/";
    $("doc-jump").hidden = marks.length === 0;
    if (marks.length) {
      marks[0].id = "cited";
      marks[0].tabIndex = -1;  // focusable by script, so keyboard and screen-reader users land on the quote
      scrollToMark();
    } else {
      window.scrollTo(0, 0);
      $("doc-title").tabIndex = -1;
      $("doc-title").focus({ preventScroll: true });
    }
  }

  function scrollToMark() {
    var mark = $("cited");
    if (!mark) return;
    mark.scrollIntoView({ block: "center" });
    mark.focus({ preventScroll: true });
  }

  function openDocument(docId, start, end, query) {
    showView("doc");
    $("doc-title").textContent = "Loading…";
    $("doc-meta").textContent = "";
    $("doc-body").textContent = "";
    $("doc-jump").hidden = true;
    fetchJSON("documents/" + encodeURIComponent(docId)).then(function (doc) {
      renderDocument(doc, start, end, query);
    }, function (error) {
      $("doc-title").textContent = "Document not available";
      $("doc-meta").textContent = error.message;
    });
  }

  /* ---------------------------------------------------------------------------------------------------------- */
  /* Routing                                                                                                    */
  /* ---------------------------------------------------------------------------------------------------------- */

  function intParam(params, name) {
    var value = params.get(name);
    if (value === null || !/^\d+$/.test(value)) return null;
    return parseInt(value, 10);
  }

  function route() {
    var hash = location.hash || "#/";
    var qmark = hash.indexOf("?");
    var path = qmark === -1 ? hash.slice(1) : hash.slice(1, qmark);
    var params = new URLSearchParams(qmark === -1 ? "" : hash.slice(qmark + 1));
    if (path.indexOf("/doc/") === 0) {
      var docId;
      try { docId = decodeURIComponent(path.slice(5)); } catch (e) { docId = path.slice(5); }
      openDocument(docId, intParam(params, "start"), intParam(params, "end"), params.get("q") || "");
      return;
    }
    showView("search");
    var query = params.get("q") || "";
    if (path === "/search" && query.trim()) {
      if (query !== state.query || $("result-list").childElementCount === 0) runSearch(query);
      else $("q").value = query;  // back from a document: the results are still on the page
    } else {
      $("q").focus();
    }
  }

  function onSubmit(event) {
    event.preventDefault();
    var query = $("q").value;
    if (!query.trim()) {
      setStatus("Type a question first.", true);
      $("q").focus();
      return;
    }
    var target = searchHash(query);
    if (location.hash === target) runSearch(query);  // same query again: no hashchange, search anyway
    else location.hash = target;
  }

  function init() {
    $("search-form").addEventListener("submit", onSubmit);
    $("more").addEventListener("click", loadMore);
    $("jump-button").addEventListener("click", scrollToMark);
    window.addEventListener("hashchange", route);
    fetchJSON("page-config").then(function (config) {
      state.perDocCap = config.per_doc_cap;
      if (config.max_query_chars) $("q").maxLength = config.max_query_chars;
      setVersion(config.index_version);
    }, function () { /* defaults above are fine */ }).then(route);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();

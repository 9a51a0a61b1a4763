// The local file check of the public lookup page. The citizen picks (or drops) a file;
// this script hashes it with WebCrypto SHA-256 in the browser and compares the digest
// with the fingerprint of the signed document. It never sends anything: it makes no
// request at all, and the page's Content-Security-Policy (connect-src 'none') would
// refuse one. Every text it shows comes from the page's data-msg-* attributes, in the
// page's language, and is set with textContent (never parsed as HTML).
'use strict';

(function () {
  var section = document.getElementById('file-check');
  if (!section) {
    return;
  }
  // The scan's hash, and the delivered certified PDF's when there is one: either matches.
  var expected = [section.dataset.sha256, section.dataset.sha256Pdf].filter(Boolean);
  var revoked = section.dataset.revoked === 'true';
  var sizeMax = Number(section.dataset.sizeMax);
  var input = document.getElementById('file-input');
  var dropZone = document.getElementById('drop-zone');
  var result = document.getElementById('file-result');
  var verdict = document.getElementById('file-verdict');
  var detail = document.getElementById('file-detail');
  var fileHash = document.getElementById('file-hash');
  var fileHashValue = document.getElementById('file-hash-value');
  var message = section.dataset;

  function show(state, verdictText, detailText, hashText) {
    result.hidden = false;
    result.dataset.verdict = state;
    result.className = 'file-result file-result-' + state;
    verdict.textContent = verdictText;
    detail.textContent = detailText || '';
    fileHash.hidden = !hashText;
    fileHashValue.textContent = hashText || '';
  }

  function hex(buffer) {
    return Array.prototype.map.call(new Uint8Array(buffer), function (byte) {
      return byte.toString(16).padStart(2, '0');
    }).join('');
  }

  function mismatch(digest) {
    show('mismatch', message.msgMismatch, message.msgMismatchDetail, digest);
  }

  async function check(file) {
    if (!file) {
      return;
    }
    if (file.size > sizeMax) {
      // Larger than any file the node signs: it cannot be the document.
      mismatch('');
      return;
    }
    show('working', message.msgWorking, file.name);
    try {
      var digest = hex(await window.crypto.subtle.digest('SHA-256', await file.arrayBuffer()));
      if (expected.indexOf(digest) < 0) {
        mismatch(digest);
      } else if (revoked) {
        show('match-revoked', message.msgMatchRevoked, file.name);
      } else {
        show('match', message.msgMatch, file.name);
      }
    } catch (error) {
      show('failed', message.msgFailed, '');
    }
  }

  section.hidden = false;
  if (!window.crypto || !window.crypto.subtle) {
    // WebCrypto exists only in secure contexts (HTTPS or localhost).
    input.disabled = true;
    show('unsupported', message.msgUnsupported, '');
    return;
  }
  input.addEventListener('change', function () {
    check(input.files[0]);
  });
  dropZone.addEventListener('dragover', function (event) {
    event.preventDefault();
    dropZone.classList.add('drop-zone-active');
  });
  dropZone.addEventListener('dragleave', function () {
    dropZone.classList.remove('drop-zone-active');
  });
  dropZone.addEventListener('drop', function (event) {
    event.preventDefault();
    dropZone.classList.remove('drop-zone-active');
    check(event.dataTransfer.files[0]);
  });
})();

// Attachments in the widget, as the Transport SDK drives them: onAttachment
// for an upload URL, a PUT of the bytes (with progress), then a message
// naming the file by its id. Files shown in messages come from the network:
// only http(s) URLs are used, images as <img> previews, everything else as
// a download link; names go in as text.

import { h } from './ui.js';
import { httpUrl, str } from './structured.js';
import { uuid } from './storage.js';

// The types and largest size the published configuration allows, or null
// while attachments are off.
export function uploadRules(config) {
  const upload = (config && config.messenger && config.messenger.fileUpload) || {};
  const modes = Array.isArray(upload.modes) ? upload.modes : [];
  if (!upload.enableAttachments || !modes.length) return null;
  return {
    accept: modes.flatMap((m) => (Array.isArray(m.fileTypes) ? m.fileTypes : [])).join(','),
    maxKB: Math.max(0, ...modes.map((m) => Number(m.maxFileSizeKB) || 0)),
  };
}

// The nodes that show a message's attachments.
export function renderAttachments(content) {
  const nodes = [];
  for (const item of Array.isArray(content) ? content : []) {
    if (!item || item.contentType !== 'Attachment' || !item.attachment) continue;
    const file = item.attachment;
    const url = httpUrl(file.url);
    const name = str(file.filename) || 'file';
    if (!url) {
      nodes.push(h('span', { class: 'file' }, name));
    } else if (file.mediaType === 'Image') {
      nodes.push(
        h('a', { class: 'file image', href: url, target: '_blank', rel: 'noopener noreferrer', download: name },
          h('img', { src: url, alt: name, loading: 'lazy' })),
      );
    } else {
      nodes.push(h('a', { class: 'file', href: url, target: '_blank', rel: 'noopener noreferrer', download: name }, `\u{1f4ce} ${name}`));
    }
  }
  return nodes;
}

// PUTs `file` to the presigned URL with its headers, reporting progress
// (0..1); resolves with the HTTP status.
function put(url, headers, file, progress) {
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    xhr.open('PUT', url);
    for (const [name, value] of Object.entries(headers || {})) xhr.setRequestHeader(name, value);
    xhr.setRequestHeader('Content-Type', file.type || 'application/octet-stream');
    xhr.upload.onprogress = (e) => e.lengthComputable && progress(e.loaded / e.total);
    xhr.onload = () => resolve({ status: xhr.status, body: xhr.responseText });
    xhr.onerror = () => resolve({ status: 0, body: '' });
    xhr.send(file);
  });
}

// Uploads `file` over the session `conn` (token `token`); answers the
// attachment id, or throws an Error with what to tell the visitor.
export async function upload(conn, token, file, progress) {
  const attachmentId = uuid();
  const answer = await conn.request({
    action: 'onAttachment',
    token,
    attachmentId,
    fileName: file.name || 'file',
    fileType: file.type || 'application/octet-stream',
    fileSize: file.size,
    errorsAsJson: true,
  });
  if (answer.class !== 'PresignedUrlResponse' || !answer.body || !httpUrl(answer.body.url)) {
    const body = answer.body || {};
    throw new Error(str(body.errorMessage) || (typeof body === 'string' ? body : 'the file cannot be sent'));
  }
  const done = await put(answer.body.url, answer.body.headers, file, progress);
  if (done.status !== 200) {
    let reason = 'the upload failed';
    try {
      reason = JSON.parse(done.body).message || reason;
    } catch {
      // Not the error body: keep the generic reason.
    }
    throw new Error(reason);
  }
  return attachmentId;
}

// The onMessage body that sends an uploaded file, as the SDK sends it.
export function attachmentMessage(attachmentId) {
  return { type: 'Text', text: '', content: [{ contentType: 'Attachment', attachment: { id: attachmentId } }] };
}

// The JSON API, as the page uses it. Every failure becomes an ApiError with the server's
// message (and line/column for errors in the query text).

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

async function call(method, url, body) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch (e) {
    throw new ApiError(0, { error: `the server cannot be reached (${e.message})` });
  }
  let data = null;
  try { data = await response.json(); } catch { data = null; }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

export const getInfo = () => call("GET", "/api/info");
export const query = (sql, useIndex = true) =>
  call("POST", "/api/query", { sql, use_index: useIndex, limit: 50 });
export const startQuery = (sql, useIndex) =>
  call("POST", "/api/queries", { sql, use_index: useIndex });
export const queryState = (id, offset, limit) =>
  call("GET", `/api/queries/${encodeURIComponent(id)}?offset=${offset}&limit=${limit}`);
export const queryCards = (id, offset, limit) =>
  call("GET", `/api/queries/${encodeURIComponent(id)}/cards?offset=${offset}&limit=${limit}`);
export const cancelQuery = (id) => call("DELETE", `/api/queries/${encodeURIComponent(id)}`);
export const maskInfo = (id) => call("GET", `/api/masks/${encodeURIComponent(id)}`);

// The URL of a mask's picture; picture = {roi, range} of the query's CP term, or null.
export function pictureUrl(maskId, picture, size, legend = true) {
  const params = new URLSearchParams();
  if (size) params.set("size", String(size));
  if (picture && picture.roi !== null && picture.roi !== undefined) {
    params.set("roi", Array.isArray(picture.roi) ? picture.roi.join(",") : picture.roi);
  }
  if (picture && picture.range) params.set("range", picture.range);
  if (!legend) params.set("legend", "0");
  const query = params.toString();
  return `/api/masks/${encodeURIComponent(maskId)}.png${query ? "?" + query : ""}`;
}

// The one way to the server: POST /graphql on this origin with the key as a Bearer header
// (never in a URL, so never in a log).

export class ApiError extends Error {
  constructor(message, code) {
    super(message);
    this.code = code;
  }
}

const EXPLAINED = {
  CONFLICT: "Someone changed this meanwhile",
  FORBIDDEN: "Your role may not do this",
  NOT_FOUND: "Not found",
  AMBIGUOUS_IDENTIFIER: "More than one customer has this",
  UNAUTHENTICATED: "The key was not accepted",
  TIMEOUT: "The server took too long",
  LIMIT_EXCEEDED: "The request was too large",
};

/** A readable message for a coded error: what it means, then the server's words. */
export function explain(error) {
  const code = error.code || error.extensions?.code || "ERROR";
  const lead = EXPLAINED[code];
  return lead ? `${lead} (${code}): ${error.message}` : `${code}: ${error.message}`;
}

export class Api {
  constructor(key) {
    this.key = key;
  }

  /** {data, errors, extensions} of one GraphQL request; throws ApiError when there is no GraphQL answer. */
  async request(query, variables = {}) {
    let response;
    try {
      response = await fetch("/graphql", {
        method: "POST",
        headers: { "Content-Type": "application/json", Authorization: `Bearer ${this.key}` },
        body: JSON.stringify({ query, variables }),
        credentials: "omit",
        cache: "no-store",
      });
    } catch (e) {
      throw new ApiError(`the server cannot be reached (${e.message})`, "NETWORK");
    }
    let body = null;
    try {
      body = await response.json();
    } catch {
      throw new ApiError(`HTTP ${response.status} without a GraphQL answer`, "HTTP");
    }
    if (!response.ok) {
      const first = body?.errors?.[0];
      throw new ApiError(first?.message || `HTTP ${response.status}`, first?.extensions?.code || "HTTP");
    }
    return { data: body.data || {}, errors: body.errors || [], extensions: body.extensions || {} };
  }

  /** The data of a request whose every error is fatal (mutations): throws the first error as an ApiError. */
  async run(query, variables = {}) {
    const result = await this.request(query, variables);
    if (result.errors.length) {
      const first = result.errors[0];
      throw new ApiError(first.message, first.extensions?.code || "ERROR");
    }
    return result;
  }
}

/** Field name -> the reason it was withheld, for the fields under one response path (e.g. "card"). */
export function withheldUnder(extensions, root) {
  const reasons = new Map();
  for (const note of extensions?.withheld || []) {
    const path = String(note.path || "").split(".");
    if (path[0] === root) reasons.set(path.slice(1).join("."), note.reason || (note.purposes || []).join(", "));
  }
  return reasons;
}

// Verifies latchkey access tokens with the `jose` package (panva/jose), fetching the keys
// from the service's JWKS URL, as a Node.js resource server would.
//
//   node verify.mjs --jwks URL --issuer ISS --audience AUD [--alg ALG]... TOKEN...
//
// Each option falls back to an environment variable: JWKS_URL, ISSUER, AUDIENCE, ALGS
// (comma-separated) and TOKEN (when no token is given as an argument). All tokens are checked
// against one remote key set, in order. For each verified token the payload is printed as one
// line of JSON on stdout. The first failure prints `CODE: message` on stderr and exits 1
// (CODE is jose's error code, e.g. ERR_JWS_SIGNATURE_VERIFICATION_FAILED); usage errors exit 2.

import { parseArgs } from "node:util";
import { createRemoteJWKSet, jwtVerify } from "jose";

function usage(message) {
  process.stderr.write(`verify.mjs: ${message}\n`);
  process.exit(2);
}

let parsed;
try {
  parsed = parseArgs({
    allowPositionals: true,
    options: {
      jwks: { type: "string" },
      issuer: { type: "string" },
      audience: { type: "string" },
      alg: { type: "string", multiple: true },
    },
  });
} catch (error) {
  usage(error.message);
}
const { values, positionals } = parsed;
const env = process.env;

const jwksUrl = values.jwks ?? env.JWKS_URL;
const issuer = values.issuer ?? env.ISSUER;
const audience = values.audience ?? env.AUDIENCE;
const algorithms = values.alg ?? (env.ALGS ? env.ALGS.split(",") : undefined);
const tokens = positionals.length > 0 ? positionals : env.TOKEN ? [env.TOKEN] : [];

if (!jwksUrl || !issuer || !audience) usage("--jwks, --issuer and --audience are required");
if (tokens.length === 0) usage("no token given");

const JWKS = createRemoteJWKSet(new URL(jwksUrl));
const options = { issuer, audience, typ: "at+jwt", requiredClaims: ["exp", "iat", "sub"] };
if (algorithms) options.algorithms = algorithms;

for (const token of tokens) {
  try {
    const { payload } = await jwtVerify(token, JWKS, options);
    process.stdout.write(`${JSON.stringify(payload)}\n`);
  } catch (error) {
    process.stderr.write(`${error.code ?? error.name}: ${error.message}\n`);
    process.exit(1);
  }
}

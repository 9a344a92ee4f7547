// Dynamic's own generated API client (@dynamic-labs/sdk-api) against the reference server:
// every token call it has, answered in shapes its typed decoders accept, and the errors
// its models describe. Run by .ci/sdk, which installs the client and starts the server.
import assert from 'node:assert/strict';

const sdk = await import(process.env.APITOKEN_SDK_ENTRY);
const {
  Configuration, TokensApi, UserApiTokensApi, BadRequestFromJSON, NotFoundFromJSON,
  UnprocessableEntityFromJSON, UnprocessableEntityErrorCode,
} = sdk;
const base = `${process.env.APITOKEN_SDK_BASE}/api/v0`;
const environmentId = process.env.APITOKEN_SDK_ENVIRONMENT;
const client = (token) => {
  const config = new Configuration({ basePath: base, accessToken: token });
  return { tokens: new TokensApi(config), user: new UserApiTokensApi(config) };
};
const admin = client(process.env.APITOKEN_SDK_TOKEN);

/** The status and the body of the error answer a call fails with (the client throws the
 * fetch `Response` itself). */
async function failure(call) {
  try {
    await call;
  } catch (e) {
    if (e instanceof Response) return { status: e.status, body: await e.json() };
    throw e;
  }
  assert.fail('the call succeeded');
}

/** What every decoded token must hold, as the client's `Token` model types it. */
function checkToken(token, what) {
  assert.equal(typeof token.id, 'string', what);
  assert.match(token.checksum, /^[0-9A-Za-z]{6}$/, what);
  assert.ok(token.createdAt instanceof Date && !Number.isNaN(token.createdAt.getTime()), what);
  assert.equal(typeof token.createdBy.id, 'string', what);
  assert.equal(token.projectEnvironmentId, environmentId, what);
}

// Create through both routes; the raw token is shown once.
const made = await admin.tokens.postToken({
  environmentId,
  postTokenFields: { note: 'sdk: environment route', scopes: ['environment.apiTokens.read'] },
});
checkToken(made.token, 'postToken');
assert.match(made.token.rawToken, /^dyn_[0-9A-Za-z]{36}$/);
const mine = await admin.user.createUserApiToken({
  postTokenFields: { note: 'sdk: user route', scopes: ['environment.apiTokens.write'] },
});
checkToken(mine.token, 'createUserApiToken');

// Lists decode and hold them.
const listed = await admin.tokens.getTokens({ environmentId });
for (const t of listed.tokens) checkToken(t, 'getTokens');
assert.ok(listed.tokens.some((t) => t.id === made.token.id), 'getTokens lists the new token');
const myList = await admin.user.getUserApiTokens();
for (const t of myList.tokens) checkToken(t, 'getUserApiTokens');
assert.ok(myList.tokens.some((t) => t.id === mine.token.id));

// Deleted tokens leave the lists: the client's `Token` has no `active`, so a listed deleted
// token would look live to it.
await admin.user.deleteUserApiToken({ tokenId: mine.token.id });
await admin.tokens.deleteTokenById({ environmentId, tokenId: made.token.id });
const after = await admin.tokens.getTokens({ environmentId });
assert.ok(!after.tokens.some((t) => [made.token.id, mine.token.id].includes(t.id)),
  'a deleted token is not listed');
const myAfter = await admin.user.getUserApiTokens();
assert.ok(!myAfter.tokens.some((t) => t.id === mine.token.id));

// A note the contract forbids is a 400 the client's `BadRequest` decodes.
for (const note of ['', 'x'.repeat(101)]) {
  const { status, body } = await failure(admin.tokens.postToken({ environmentId, postTokenFields: { note } }));
  assert.equal(status, 400, `note of ${note.length} characters`);
  assert.equal(typeof BadRequestFromJSON(body).error, 'string');
}

// Not found: the client's `NotFound` requires `code`.
for (const call of [
  admin.tokens.deleteTokenById({ environmentId, tokenId: '0190a5c4-7d3e-7b5a-9c1d-ffffffffffff' }),
  admin.user.deleteUserApiToken({ tokenId: '0190a5c4-7d3e-7b5a-9c1d-ffffffffffff' }),
]) {
  const { status, body } = await failure(call);
  assert.equal(status, 404);
  const notFound = NotFoundFromJSON(body);
  assert.equal(typeof notFound.error, 'string');
  assert.equal(notFound.code, 'not_found');
}

// A business rule is a 422 whose code is one of the client's.
const reader = client(made.token.rawToken);
const narrow = await admin.tokens.postToken({
  environmentId,
  postTokenFields: { note: 'sdk: write only', scopes: ['environment.apiTokens.write'] },
});
const writer = client(narrow.token.rawToken);
const { status, body } = await failure(writer.user.createUserApiToken({
  postTokenFields: { note: 'more', scopes: ['environment.users.write'] },
}));
assert.equal(status, 422);
const refused = UnprocessableEntityFromJSON(body);
assert.ok(Object.values(UnprocessableEntityErrorCode).includes(refused.code), refused.code);
assert.equal(refused.code, 'invalid_scopes');

// A revoked token is refused with the one 401.
const gone = await failure(reader.tokens.getTokens({ environmentId }));
assert.equal(gone.status, 401);

console.log('Dynamic\'s client (@dynamic-labs/sdk-api): every token call and error decoded');

-- mod_mft: completes the managed-file-transfer node's audit trail for a Prosody VirtualHost.
--
-- * Uploads: answers XEP-0363 slot requests with slots on the node, signed (HS256 JWT, the
--   claims of mod_http_file_share) for the requesting user, so every upload names its uploader.
-- * Shares: when a local user sends a message carrying one of the node's slot URLs (in the body
--   or jabber:x:oob), reports recipient and chat type to the node (POST /shares), in the
--   background, retried until the node answers; the message is never delayed or dropped.
-- * Downloads: gives each local recipient (1:1, every room occupant, offline delivery, MAM) the
--   URL with a capability of their own (mft_for, mft_to, mft_type, mft_cap), the same in the body and
--   the OOB element, so the node's Get row names the real downloader.
--
-- Configuration and the rows it produces: README.md here and docs/xmpp.md.

local st = require "util.stanza";
local jid = require "util.jid";
local jwt = require "util.jwt";
local hashes = require "util.hashes";
local http = require "net.http";
local id = require "util.id";
local urlcodec = require "util.http";
local dataform = require "util.dataforms".new;

local base_url = assert(module:get_option_string("mft_base_url"), "mod_mft needs mft_base_url (the node's public_url)"):gsub("/+$", "");
local secret = assert(module:get_option_string("mft_secret"), "mod_mft needs mft_secret (one of the node's http.slot_secrets)");
local max_file_size = module:get_option_number("mft_max_file_size", 100 * 1024 * 1024);
local file_expiry = module:get_option_number("mft_file_expiry"); -- seconds; nil: never purged by the node
local retry_max_delay = module:get_option_number("mft_retry_max_delay", 60);
local max_pending = module:get_option_number("mft_max_pending_reports", 10000);

local namespace = "urn:xmpp:http:upload:0";
local slot_prefix = base_url .. "/upload/";
local shares_url = base_url .. "/shares";

-- Uploads ---------------------------------------------------------------------------------------

module:add_identity("store", "file", "File upload to the managed-file-transfer node");
module:add_feature(namespace);
module:add_extension(dataform {
	{ name = "FORM_TYPE", type = "hidden", value = namespace },
	{ name = "max-file-size", type = "text-single" },
}:form({ ["max-file-size"] = tostring(max_file_size) }, "result"));

local function handle_slot_request(event)
	local stanza, origin = event.stanza, event.origin;
	local request = stanza.tags[1];
	local filename = request.attr.filename;
	local size = tonumber(request.attr.size);
	local filetype = request.attr["content-type"] or "application/octet-stream";
	if origin.type ~= "c2s" then
		origin.send(st.error_reply(stanza, "cancel", "not-allowed", "Only local users may upload"));
		return true;
	end
	if not filename or filename == "" or filename:find("[/%c]") or filename == "." or filename == ".." then
		origin.send(st.error_reply(stanza, "modify", "bad-request", "Invalid file name"));
		return true;
	end
	if not size or size < 0 or size % 1 ~= 0 then
		origin.send(st.error_reply(stanza, "modify", "bad-request", "Invalid file size"));
		return true;
	end
	if size > max_file_size then
		origin.send(st.error_reply(stanza, "modify", "not-acceptable", "File too large")
			:tag("file-too-large", { xmlns = namespace })
				:tag("max-file-size"):text(tostring(max_file_size)));
		return true;
	end
	local uploader = jid.bare(stanza.attr.from);
	local slot, now = id.long(), os.time();
	local token = jwt.sign(secret, {
		sub = uploader; iat = now; exp = now + 300;
		slot = slot; expires = file_expiry and (now + file_expiry) or nil;
		filename = filename; filesize = size; filetype = filetype;
	});
	local url = slot_prefix .. slot .. "/" .. urlcodec.urlencode(filename);
	module:log("info", "Issuing upload slot %s to %s for %d bytes", slot, uploader, size);
	origin.send(st.reply(stanza)
		:tag("slot", { xmlns = namespace })
			:tag("get", { url = url }):up()
			:tag("put", { url = url })
				:text_tag("header", "Bearer " .. token, { name = "Authorization" }));
	return true;
end

module:hook("iq-get/host/" .. namespace .. ":request", handle_slot_request);

-- The node's URLs in a message --------------------------------------------------------------------

-- A slot URL without its query or fragment (a capability someone passed on).
local function without_query(url)
	return (url:match("^[^?#]*"));
end

-- Calls rewrite(url) for each of the node's slot URLs in `text` and returns the new text.
local function each_url(text, rewrite)
	local out, pos = {}, 1;
	while true do
		local start = text:find(slot_prefix, pos, true);
		if not start then break end
		local stop = (text:find("[%s<>\"']", start) or (#text + 1)) - 1;
		table.insert(out, text:sub(pos, start - 1));
		table.insert(out, rewrite(text:sub(start, stop)));
		pos = stop + 1;
	end
	table.insert(out, text:sub(pos));
	return table.concat(out);
end

-- Rewrites the node's URLs in the body and the OOB URL of `stanza` in place; returns the
-- distinct URLs found (without query).
local function rewrite_urls(stanza, rewrite)
	local found, seen = {}, {};
	local function visit(url)
		local plain = without_query(url);
		if not seen[plain] then seen[plain] = true; table.insert(found, plain); end
		return rewrite(plain);
	end
	local function rewrite_text(tag)
		local text = tag and tag:get_text();
		if not text or not text:find(slot_prefix, 1, true) then return end
		local new = each_url(text, visit);
		for i = #tag, 1, -1 do table.remove(tag, i); end
		tag:text(new);
	end
	rewrite_text(stanza:get_child("body"));
	local oob = stanza:get_child("x", "jabber:x:oob");
	rewrite_text(oob and oob:get_child("url"));
	return found;
end

-- Shares ------------------------------------------------------------------------------------------

local pending = 0;

-- Reports one share to the node, retrying with a growing delay until it is recorded or refused.
local function report(claims, attempt)
	local now = os.time();
	claims.iat, claims.exp = now, now + 300;
	local token = jwt.sign(secret, claims);
	http.request(shares_url, { method = "POST", body = "", headers = { Authorization = "Bearer " .. token } }, function(body, code)
		if code == 200 then
			pending = pending - 1;
			module:log("info", "Share of %s by %s to %s (%s) recorded: %s", claims.url, claims.sub, claims.to, claims.chat_type, body);
		elseif type(code) == "number" and code >= 400 and code < 500 and code ~= 408 and code ~= 429 then
			pending = pending - 1;
			module:log("warn", "The node refused the share of %s by %s to %s: %s %s", claims.url, claims.sub, claims.to, code, body);
		else
			local delay = math.min(2 ^ attempt, retry_max_delay);
			module:log("warn", "Cannot report the share of %s to the node (%s), retrying in %ds", claims.url, tostring(code), delay);
			module:add_timer(delay, function() report(claims, attempt + 1); end);
		end
	end);
end

local function queue_report(claims)
	if pending >= max_pending then
		module:log("error", "%d share reports pending: not recording the share of %s by %s to %s", pending, claims.url, claims.sub, claims.to);
		return;
	end
	pending = pending + 1;
	report(claims, 0);
end

-- The chat type of the room `room_jid`: persistent (room:get_persistent()) or ad hoc.
local function room_type(room_jid)
	local host = prosody.hosts[jid.host(room_jid)];
	local muc = host and host.modules and host.modules.muc;
	local room = muc and muc.get_room_from_jid and muc.get_room_from_jid(room_jid);
	return (room and room:get_persistent()) and "persistent" or "groupchat";
end

-- The chat of a message to `to` and its type: a room's, or a 1:1 chat with the recipient.
local function chat_of(stanza)
	local to = jid.bare(stanza.attr.to);
	if stanza.attr.type ~= "groupchat" then
		return to, "im";
	end
	return to, room_type(to);
end

-- A local user's message on its way out: strip capabilities from the node's URLs (each
-- recipient gets a URL of their own) and report the share.
local function on_outgoing(event)
	local origin, stanza = event.origin, event.stanza;
	if origin.type ~= "c2s" or not stanza.attr.to or stanza.attr.type == "error" then return end
	local urls = rewrite_urls(stanza, function(url) return url; end);
	if #urls == 0 then return end
	local sharer = jid.join(origin.username, origin.host);
	local to, chat_type = chat_of(stanza);
	for _, url in ipairs(urls) do
		queue_report({ purpose = "share", sub = sharer, url = url, to = to, chat_type = chat_type });
	end
end

module:hook("pre-message/bare", on_outgoing, 1000);
module:hook("pre-message/full", on_outgoing, 1000);
module:hook("pre-message/host", on_outgoing, 1000);

-- Downloads ---------------------------------------------------------------------------------------

local function capability(url, downloader, chat, chat_type)
	local path = urlcodec.urldecode(url:sub(#slot_prefix + 1));
	local signed = "mft-capability\0" .. path .. "\0" .. downloader .. "\0" .. chat .. "\0" .. chat_type;
	return url .. "?mft_for=" .. urlcodec.urlencode(downloader) .. "&mft_to=" .. urlcodec.urlencode(chat)
		.. "&mft_type=" .. chat_type .. "&mft_cap=" .. hashes.hmac_sha256(secret, signed, true);
end

-- A message about to be delivered to (or stored for) a local user: each of the node's URLs gets
-- that user's capability. The stanza is copied: a room sends one stanza object to every occupant.
local function on_delivery(event)
	local stanza = event.stanza;
	if not stanza.attr.to or not jid.node(stanza.attr.to) then return end
	local body, oob = stanza:get_child_text("body"), stanza:get_child("x", "jabber:x:oob");
	if not ((body and body:find(slot_prefix, 1, true)) or oob) then return end
	local downloader = jid.bare(stanza.attr.to);
	local chat, chat_type = downloader, "im";
	if stanza.attr.type == "groupchat" then
		chat = jid.bare(stanza.attr.from);
		chat_type = room_type(chat);
	end
	local copy = st.clone(stanza);
	if #rewrite_urls(copy, function(url) return capability(url, downloader, chat, chat_type); end) > 0 then
		event.stanza = copy;
	end
end

module:hook("message/bare", on_delivery, 1000);
module:hook("message/full", on_delivery, 1000);

//! The HTTP side: sign up, log in (registering a device), conversations, history.

use crate::ClientError;
use protocol::http::{
    AccountSettings, ConvKind, Conversation, ConversationChange, ConversationPage, GroupAdds,
    HistoryPage, LogIn, NewConversation, Role, RoleChange, SearchPage, Session, SettingsChange,
    SettingsPatch, SignUp, SignedUp, StorageUse,
};
use protocol::{ConvId, ErrorBody, UserId};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

#[derive(Clone)]
/// The HTTP API of one server (docs/protocol.md, "HTTP API"): accounts, devices,
/// conversations, history, media. Calls marked 🔒 in the protocol take the device `token`.
/// Refusals come back as [`ClientError::Server`] with the server's code.
pub struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    /// `base` is the server's HTTP root, e.g. `http://127.0.0.1:8080`.
    pub fn new(base: impl Into<String>) -> Self {
        Self {
            base: base.into().trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
        }
    }

    /// Uses `http` for every request (a proxy, TLS roots, a local address to bind).
    pub fn with_http(mut self, http: reqwest::Client) -> Self {
        self.http = http;
        self
    }

    fn req(&self, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
        let r = self.http.request(method, format!("{}/v1{path}", self.base));
        match token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    async fn call<T: DeserializeOwned>(&self, req: RequestBuilder) -> Result<T, ClientError> {
        let (status, body) = self.raw(req).await?;
        if !status.is_success() {
            return Err(error_of(&body));
        }
        serde_json::from_slice(&body).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// Status and body, whatever the status.
    pub async fn raw(&self, req: RequestBuilder) -> Result<(StatusCode, Vec<u8>), ClientError> {
        let rsp = req
            .send()
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let status = rsp.status();
        let body = rsp
            .bytes()
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        Ok((status, body.to_vec()))
    }

    /// A request to `/v1{path}` for callers that need more than the typed helpers.
    pub fn request(&self, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
        self.req(method, path, token)
    }

    /// Registers a user (`POST /v1/users`); its id.
    pub async fn sign_up(&self, username: &str, password: &str) -> Result<UserId, ClientError> {
        self.sign_up_invited(username, password, None).await
    }

    /// Signs up with an invite code (needed where the server takes sign-ups by invitation).
    pub async fn sign_up_invited(
        &self,
        username: &str,
        password: &str,
        invite: Option<&str>,
    ) -> Result<UserId, ClientError> {
        let body = SignUp {
            username: username.into(),
            password: password.into(),
            invite: invite.map(Into::into),
        };
        let r: SignedUp = self
            .call(self.req(Method::POST, "/users", None).json(&body))
            .await?;
        Ok(r.user)
    }

    /// Logs in as a new device (`POST /v1/sessions`): the session to keep (one device per
    /// install; a user has at most 10, the one seen longest ago is revoked past that).
    pub async fn log_in(
        &self,
        username: &str,
        password: &str,
        device_name: &str,
        platform: &str,
    ) -> Result<Session, ClientError> {
        let body = LogIn {
            username: username.into(),
            password: password.into(),
            device_name: device_name.into(),
            platform: platform.into(),
        };
        self.call(self.req(Method::POST, "/sessions", None).json(&body))
            .await
    }

    /// Ids and names of the users named in `names` (and of those with the ids in `ids`).
    pub async fn users(
        &self,
        token: &str,
        names: &[&str],
        ids: &[&str],
    ) -> Result<Vec<protocol::http::Profile>, ClientError> {
        let req = self
            .req(Method::GET, "/users", Some(token))
            .query(&[("names", names.join(",")), ("ids", ids.join(","))]);
        self.call(req).await
    }

    /// The caller's active devices.
    /// The caller's account settings.
    pub async fn settings(&self, token: &str) -> Result<AccountSettings, ClientError> {
        self.call(self.req(Method::GET, "/me/settings", Some(token)))
            .await
    }

    /// Changes the caller's account settings (the fields set in `change`).
    pub async fn change_settings(
        &self,
        token: &str,
        change: &SettingsChange,
    ) -> Result<AccountSettings, ClientError> {
        self.call(
            self.req(Method::PATCH, "/me/settings", Some(token))
                .json(change),
        )
        .await
    }

    /// What the caller stores, against their quota.
    pub async fn storage(&self, token: &str) -> Result<StorageUse, ClientError> {
        self.call(self.req(Method::GET, "/me/storage", Some(token)))
            .await
    }

    /// Who may add the caller to groups.
    pub async fn set_group_adds(
        &self,
        token: &str,
        group_adds: GroupAdds,
    ) -> Result<AccountSettings, ClientError> {
        let change = SettingsChange {
            group_adds: Some(group_adds),
        };
        self.change_settings(token, &change).await
    }

    /// The caller's active devices.
    pub async fn devices(
        &self,
        token: &str,
    ) -> Result<Vec<protocol::http::DeviceInfo>, ClientError> {
        self.call(self.req(Method::GET, "/devices", Some(token)))
            .await
    }

    /// Signs `device` (one of the caller's) out: its token stops working and it is
    /// disconnected.
    pub async fn revoke_device(&self, token: &str, device: &str) -> Result<(), ClientError> {
        self.no_content(self.req(Method::DELETE, &format!("/devices/{device}"), Some(token)))
            .await
    }

    /// Changes the caller's password; every other device of theirs is signed out.
    pub async fn change_password(
        &self,
        token: &str,
        old: &str,
        new: &str,
    ) -> Result<(), ClientError> {
        let body = protocol::http::PasswordChange {
            old: old.into(),
            new: new.into(),
        };
        self.no_content(
            self.req(Method::POST, "/me/password", Some(token))
                .json(&body),
        )
        .await
    }

    /// Deletes the caller's account (see docs/protocol.md, "Deleting an account").
    pub async fn delete_account(&self, token: &str, password: &str) -> Result<(), ClientError> {
        let body = protocol::http::DeleteAccount {
            password: password.into(),
        };
        self.no_content(self.req(Method::DELETE, "/me", Some(token)).json(&body))
            .await
    }

    /// Signs out every device of the caller's but this one.
    pub async fn revoke_other_devices(&self, token: &str) -> Result<(), ClientError> {
        self.no_content(self.req(Method::DELETE, "/devices", Some(token)))
            .await
    }

    /// The caller's profile.
    pub async fn me(&self, token: &str) -> Result<protocol::http::Profile, ClientError> {
        self.call(self.req(Method::GET, "/me", Some(token))).await
    }

    /// Changes the caller's display name or avatar (see [`protocol::http::ProfileChange`]).
    pub async fn change_profile(
        &self,
        token: &str,
        change: &protocol::http::ProfileChange,
    ) -> Result<protocol::http::Profile, ClientError> {
        self.call(self.req(Method::PATCH, "/me", Some(token)).json(change))
            .await
    }

    /// The WebP bytes at a profile's `avatar` address.
    pub async fn avatar(&self, token: &str, avatar: &str) -> Result<Vec<u8>, ClientError> {
        let url = format!("{}{avatar}", self.base);
        let (status, body) = self.raw(self.http.get(url).bearer_auth(token)).await?;
        if !status.is_success() {
            return Err(error_of(&body));
        }
        Ok(body)
    }

    /// Blocks `user`: see docs/protocol.md, "Blocking".
    pub async fn block(
        &self,
        token: &str,
        user: &UserId,
    ) -> Result<protocol::http::Block, ClientError> {
        let body = protocol::http::BlockUser { user: user.clone() };
        self.call(self.req(Method::POST, "/blocks", Some(token)).json(&body))
            .await
    }

    /// Lifts the caller's block of `user`.
    pub async fn unblock(&self, token: &str, user: &UserId) -> Result<(), ClientError> {
        self.no_content(self.req(Method::DELETE, &format!("/blocks/{user}"), Some(token)))
            .await
    }

    /// The users the caller blocked, most recent first.
    pub async fn blocks(&self, token: &str) -> Result<Vec<protocol::http::Block>, ClientError> {
        self.call(self.req(Method::GET, "/blocks", Some(token)))
            .await
    }

    /// Reports a user or a message to the server's operators.
    pub async fn report(
        &self,
        token: &str,
        report: &protocol::http::NewReport,
    ) -> Result<protocol::http::Report, ClientError> {
        self.call(self.req(Method::POST, "/reports", Some(token)).json(report))
            .await
    }

    /// Registers where to notify `device` while it is away (`provider`: fcm, apns, …).
    pub async fn set_push_token(
        &self,
        token: &str,
        device: &str,
        provider: &str,
        push_token: &str,
    ) -> Result<(), ClientError> {
        let body = protocol::http::PushToken {
            provider: provider.into(),
            token: push_token.into(),
        };
        let path = format!("/devices/{device}/push");
        self.no_content(self.req(Method::PUT, &path, Some(token)).json(&body))
            .await
    }

    /// Uploads a file in one request (`POST /v1/media`); `name` is what recipients see.
    pub async fn upload(
        &self,
        token: &str,
        bytes: Vec<u8>,
        name: Option<&str>,
    ) -> Result<protocol::http::MediaFile, ClientError> {
        self.post_media(token, bytes, name, false).await
    }

    /// [`upload`](Self::upload), storing the file exactly as given: an image keeps its EXIF
    /// (GPS position, camera serial), XMP and comments, which the server otherwise strips.
    pub async fn upload_keeping_metadata(
        &self,
        token: &str,
        bytes: Vec<u8>,
        name: Option<&str>,
    ) -> Result<protocol::http::MediaFile, ClientError> {
        self.post_media(token, bytes, name, true).await
    }

    async fn post_media(
        &self,
        token: &str,
        bytes: Vec<u8>,
        name: Option<&str>,
        keep_metadata: bool,
    ) -> Result<protocol::http::MediaFile, ClientError> {
        let mut req = self.req(Method::POST, "/media", Some(token)).body(bytes);
        if let Some(n) = name {
            req = req.query(&[("name", n)]);
        }
        if keep_metadata {
            req = req.query(&[("keep_metadata", "true")]);
        }
        self.call(req).await
    }

    /// Stops push notices for `device`.
    pub async fn clear_push_token(&self, token: &str, device: &str) -> Result<(), ClientError> {
        let path = format!("/devices/{device}/push");
        self.no_content(self.req(Method::DELETE, &path, Some(token)))
            .await
    }

    /// A call answered with an empty success (204), or an error body.
    async fn no_content(&self, req: RequestBuilder) -> Result<(), ClientError> {
        let (status, body) = self.raw(req).await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(error_of(&body))
        }
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        token: &str,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.call(self.req(Method::POST, path, Some(token)).json(body))
            .await
    }

    /// The direct conversation with `other`, made if it does not exist yet.
    pub async fn create_direct(
        &self,
        token: &str,
        other: &UserId,
    ) -> Result<Conversation, ClientError> {
        let body = NewConversation {
            kind: ConvKind::Direct,
            members: vec![other.clone()],
            title: None,
        };
        self.post(token, "/conversations", &body).await
    }

    /// A new group `title` with the caller (its admin) and `members`, who must allow being
    /// added (their `group_adds` setting).
    pub async fn create_group(
        &self,
        token: &str,
        title: &str,
        members: &[UserId],
    ) -> Result<Conversation, ClientError> {
        let body = NewConversation {
            kind: ConvKind::Group,
            members: members.to_vec(),
            title: Some(title.into()),
        };
        self.post(token, "/conversations", &body).await
    }

    /// One page of the conversation list (or of the archived ones): pinned first, then the
    /// most recently active. Pass the page's `next_before` for the next one.
    pub async fn conversations_page(
        &self,
        token: &str,
        archived: bool,
        before: Option<&str>,
        limit: u32,
    ) -> Result<ConversationPage, ClientError> {
        let mut req = self
            .req(Method::GET, "/conversations", Some(token))
            .query(&[("limit", limit.to_string())]);
        if archived {
            req = req.query(&[("archived", "true")]);
        }
        if let Some(b) = before {
            req = req.query(&[("before", b)]);
        }
        self.call(req).await
    }

    /// Every conversation not archived, in list order (page by page).
    pub async fn conversations(&self, token: &str) -> Result<Vec<Conversation>, ClientError> {
        let mut all = Vec::new();
        let mut before: Option<String> = None;
        loop {
            let page = self
                .conversations_page(token, false, before.as_deref(), 100)
                .await?;
            all.extend(page.conversations);
            match page.next_before {
                Some(next) => before = Some(next),
                None => return Ok(all),
            }
        }
    }

    /// Renames a group and/or sets its picture (admins); `Some(None)` clears either.
    pub async fn change_group(
        &self,
        token: &str,
        conv: &ConvId,
        change: &ConversationChange,
    ) -> Result<Conversation, ClientError> {
        let path = format!("/conversations/{conv}");
        self.call(self.req(Method::PATCH, &path, Some(token)).json(change))
            .await
    }

    /// Makes a member an admin or an admin a member (admins).
    pub async fn set_role(
        &self,
        token: &str,
        conv: &ConvId,
        user: &UserId,
        role: Role,
    ) -> Result<Conversation, ClientError> {
        let path = format!("/conversations/{conv}/members/{user}");
        self.call(
            self.req(Method::PATCH, &path, Some(token))
                .json(&RoleChange { role }),
        )
        .await
    }

    /// Leaves a group (or, for admins, removes `user` from it).
    pub async fn remove_member(
        &self,
        token: &str,
        conv: &ConvId,
        user: &UserId,
    ) -> Result<(), ClientError> {
        let path = format!("/conversations/{conv}/members/{user}");
        self.no_content(self.req(Method::DELETE, &path, Some(token)))
            .await
    }

    /// Changes the caller's own settings for a conversation (mute, pin, archive, unread).
    pub async fn conversation_settings(
        &self,
        token: &str,
        conv: &ConvId,
        patch: &SettingsPatch,
    ) -> Result<Conversation, ClientError> {
        let path = format!("/conversations/{conv}/settings");
        self.call(self.req(Method::PATCH, &path, Some(token)).json(patch))
            .await
    }

    /// Messages holding every word of `q` (the last as a prefix), newest first; in one
    /// conversation or all of the caller's.
    pub async fn search(
        &self,
        token: &str,
        q: &str,
        conv: Option<&ConvId>,
        before: Option<&str>,
        limit: u32,
    ) -> Result<SearchPage, ClientError> {
        let mut req = self
            .req(Method::GET, "/search", Some(token))
            .query(&[("q", q), ("limit", &limit.to_string())]);
        if let Some(c) = conv {
            req = req.query(&[("conv", c.as_str())]);
        }
        if let Some(b) = before {
            req = req.query(&[("before", b)]);
        }
        self.call(req).await
    }

    /// One of the caller's conversations.
    pub async fn conversation(
        &self,
        token: &str,
        conv: &ConvId,
    ) -> Result<Conversation, ClientError> {
        let path = format!("/conversations/{conv}");
        self.call(self.req(Method::GET, &path, Some(token))).await
    }

    /// A page of `conv`'s messages, newest first: `limit` of them before seq `before` (the
    /// newest when `None`), with `next_before` for the next page.
    pub async fn history(
        &self,
        token: &str,
        conv: &ConvId,
        before: Option<i64>,
        limit: u32,
    ) -> Result<HistoryPage, ClientError> {
        let mut path = format!("/conversations/{conv}/messages?limit={limit}");
        if let Some(b) = before {
            path.push_str(&format!("&before={b}"));
        }
        self.call(self.req(Method::GET, &path, Some(token))).await
    }
}

fn error_of(body: &[u8]) -> ClientError {
    #[derive(serde::Deserialize)]
    struct Wrapped {
        error: ErrorBody,
    }
    match serde_json::from_slice::<Wrapped>(body) {
        Ok(w) => ClientError::Server(w.error),
        Err(_) => ClientError::Http(String::from_utf8_lossy(body).into_owned()),
    }
}

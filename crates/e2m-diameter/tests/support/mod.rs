//! An in-memory world of nodes (quinn's `Pair` idea): connections are queues between
//! nodes, time is simulated, every transmit and event is pumped until the world is quiet.
#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test file uses a part of the harness"
)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test harness"
)]

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use e2m_diameter::{
    AdvertisedApplication, ApplicationId, AvpCode, AvpHeader, CommandCode, CommandFlags,
    ConnectionId, Dictionary, Event, MessageBuilder, MessageView, Node, NodeConfig, PeerConfig,
    PeerId, ResultCode,
};

/// The test application: id 16777216 + 999, command 999, proxiable.
pub const APP: ApplicationId = ApplicationId(16_777_999);
pub const CMD: CommandCode = CommandCode(999);

pub fn dictionary() -> Dictionary {
    use e2m_diameter::{Application, ApplicationKind, AvpRule, CommandDef, Grammar};
    let mut d = Dictionary::base();
    d.add_application(Application {
        id: APP,
        name: "test".into(),
        kind: ApplicationKind::Auth,
        vendor_id: None,
        avps: vec![],
        commands: vec![CommandDef {
            name: "Test".into(),
            code: CMD,
            application: APP,
            proxiable: true,
            request: Grammar::open(vec![
                AvpRule::required(AvpCode::SESSION_ID),
                AvpRule::required(AvpCode::ORIGIN_HOST),
                AvpRule::required(AvpCode::ORIGIN_REALM),
                AvpRule::required(AvpCode::DESTINATION_REALM),
                AvpRule::optional(AvpCode::DESTINATION_HOST),
                AvpRule::optional(AvpCode::USER_NAME),
                AvpRule::any(AvpCode::ROUTE_RECORD),
            ]),
            answer: Grammar::open(vec![AvpRule::required(AvpCode::RESULT_CODE)]),
        }],
    })
    .unwrap();
    d
}

pub fn config(host: &str, realm: &str) -> NodeConfig {
    let mut c = NodeConfig::new(host, realm, vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]);
    c.applications = vec![AdvertisedApplication::auth(APP)];
    c.watchdog_interval = Duration::from_secs(6);
    c.seed = host.len() as u64;
    c
}

pub struct World {
    pub nodes: Vec<Node>,
    pub hosts: Vec<String>,
    pub peer_hosts: HashMap<(usize, PeerId), String>,
    links: HashMap<(usize, ConnectionId), (usize, ConnectionId)>,
    pub now: Instant,
    pub events: Vec<Vec<Event>>,
    /// Nodes that cannot be reached (connections to them fail).
    pub unreachable: HashSet<usize>,
    /// Nodes whose output is thrown away (a hung peer).
    pub mute: HashSet<usize>,
    /// Answer every request at these nodes with success automatically.
    pub auto_answer: HashSet<usize>,
    /// Requests each node's application saw (message octets).
    pub seen_requests: Vec<Vec<Vec<u8>>>,
    /// Every message written on a link, in order (sender index, octets).
    pub wire: Vec<(usize, Vec<u8>)>,
}

impl World {
    pub fn new() -> Self {
        Self {
            nodes: Vec::new(),
            hosts: Vec::new(),
            peer_hosts: HashMap::new(),
            links: HashMap::new(),
            now: Instant::now(),
            events: Vec::new(),
            unreachable: HashSet::new(),
            mute: HashSet::new(),
            auto_answer: HashSet::new(),
            seen_requests: Vec::new(),
            wire: Vec::new(),
        }
    }

    pub fn add(&mut self, config: NodeConfig) -> usize {
        self.hosts.push(config.origin_host.clone());
        self.nodes.push(Node::new(config, dictionary()).unwrap());
        self.events.push(Vec::new());
        self.seen_requests.push(Vec::new());
        self.nodes.len() - 1
    }

    pub fn peer(&mut self, node: usize, host: &str, initiate: bool) -> PeerId {
        let now = self.now;
        let id = self.nodes[node]
            .add_peer(
                PeerConfig {
                    host: host.to_owned(),
                    initiate,
                },
                now,
            )
            .unwrap();
        self.peer_hosts.insert((node, id), host.to_owned());
        id
    }

    fn node_of(&self, host: &str) -> Option<usize> {
        self.hosts.iter().position(|h| h.eq_ignore_ascii_case(host))
    }

    /// Moves everything until nothing moves.
    pub fn pump(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            for i in 0..self.nodes.len() {
                while let Some(t) = self.nodes[i].poll_transmit() {
                    moved = true;
                    if self.mute.contains(&i) && !t.close {
                        continue;
                    }
                    let Some(&(j, cj)) = self.links.get(&(i, t.conn)) else {
                        continue;
                    };
                    if !t.data.is_empty() {
                        let now = self.now;
                        self.wire.push((i, t.data.clone()));
                        self.nodes[j].handle_input(cj, &t.data, now);
                    }
                    if t.close {
                        self.links.remove(&(i, t.conn));
                        self.links.remove(&(j, cj));
                        let now = self.now;
                        self.nodes[j].connection_lost(cj, now);
                    }
                }
                while let Some(ev) = self.nodes[i].poll_event() {
                    moved = true;
                    self.on_event(i, ev);
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the world does not settle");
    }

    fn on_event(&mut self, i: usize, ev: Event) {
        let now = self.now;
        match &ev {
            Event::Connect { peer, conn } => {
                let host = self
                    .peer_hosts
                    .get(&(i, *peer))
                    .cloned()
                    .unwrap_or_default();
                match self
                    .node_of(&host)
                    .filter(|j| !self.unreachable.contains(j))
                {
                    Some(j) => match self.nodes[j].accept(now) {
                        Some(cj) => {
                            self.links.insert((i, *conn), (j, cj));
                            self.links.insert((j, cj), (i, *conn));
                            self.nodes[i].connected(*conn, now);
                        }
                        None => self.nodes[i].connect_failed(*conn, now),
                    },
                    None => self.nodes[i].connect_failed(*conn, now),
                }
            }
            Event::Request { id, message, .. } => {
                self.seen_requests[i].push(message.clone());
                if self.auto_answer.contains(&i) {
                    let req = MessageView::parse(message).unwrap();
                    let mut b = MessageBuilder::answer_to(&req);
                    b.u32(
                        AvpHeader::mandatory(AvpCode::RESULT_CODE),
                        ResultCode::SUCCESS.0,
                    );
                    b.identity(AvpHeader::mandatory(AvpCode::ORIGIN_HOST), &self.hosts[i]);
                    let realm = self.nodes[i].config().origin_realm.clone();
                    b.identity(AvpHeader::mandatory(AvpCode::ORIGIN_REALM), &realm);
                    self.nodes[i].answer(*id, b.finish().unwrap()).unwrap();
                }
            }
            _ => {}
        }
        self.events[i].push(ev);
    }

    /// Advances the clock by `d`, running every timer on the way.
    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            let next = self.nodes.iter_mut().filter_map(|n| n.poll_timeout()).min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    let now = self.now;
                    for n in &mut self.nodes {
                        n.handle_timeout(now);
                    }
                    self.pump();
                }
                _ => break,
            }
        }
        self.now = end;
        self.pump();
    }

    /// Drops the link of a connection from both ends (a cable cut), reporting it to both.
    pub fn cut(&mut self, a: usize, b: usize) {
        let pairs: Vec<_> = self
            .links
            .iter()
            .filter(|((i, _), (j, _))| *i == a && *j == b)
            .map(|(k, v)| (*k, *v))
            .collect();
        for ((i, ci), (j, cj)) in pairs {
            self.links.remove(&(i, ci));
            self.links.remove(&(j, cj));
            let now = self.now;
            self.nodes[i].connection_lost(ci, now);
            self.nodes[j].connection_lost(cj, now);
        }
        self.pump();
    }

    pub fn links_between(&self, a: usize, b: usize) -> usize {
        self.links
            .keys()
            .filter(|(i, c)| *i == a && self.links.get(&(*i, *c)).is_some_and(|(j, _)| *j == b))
            .count()
    }

    /// A raw connection into `node` (a hostile or hand-driven peer); its output is collected.
    pub fn raw_accept(&mut self, node: usize) -> ConnectionId {
        let now = self.now;
        self.nodes[node].accept(now).unwrap()
    }

    /// Feeds octets to a raw connection and collects what the node writes back, and whether
    /// it closed the connection.
    pub fn raw_exchange(
        &mut self,
        node: usize,
        conn: ConnectionId,
        octets: &[u8],
    ) -> (Vec<Vec<u8>>, bool) {
        let now = self.now;
        self.nodes[node].handle_input(conn, octets, now);
        self.drain_raw(node, conn)
    }

    pub fn drain_raw(&mut self, node: usize, conn: ConnectionId) -> (Vec<Vec<u8>>, bool) {
        let mut out = Vec::new();
        let mut closed = false;
        let mut keep = Vec::new();
        while let Some(t) = self.nodes[node].poll_transmit() {
            if t.conn == conn {
                if !t.data.is_empty() {
                    out.push(t.data);
                }
                closed |= t.close;
            } else {
                keep.push(t);
            }
        }
        while let Some(ev) = self.nodes[node].poll_event() {
            self.events[node].push(ev);
        }
        assert!(
            keep.is_empty(),
            "raw exchange produced output for other connections"
        );
        (out, closed)
    }

    pub fn count(&self, node: usize, f: impl Fn(&Event) -> bool) -> usize {
        self.events[node].iter().filter(|e| f(e)).count()
    }
}

/// A request of the test application from `origin` to `dest_realm`.
pub fn request(
    origin: &str,
    origin_realm: &str,
    dest_realm: &str,
    dest_host: Option<&str>,
    session: &str,
) -> Vec<u8> {
    let mut b = MessageBuilder::request(CMD, APP, CommandFlags::PROXIABLE);
    b.utf8(AvpHeader::mandatory(AvpCode::SESSION_ID), session);
    b.identity(AvpHeader::mandatory(AvpCode::ORIGIN_HOST), origin);
    b.identity(AvpHeader::mandatory(AvpCode::ORIGIN_REALM), origin_realm);
    b.identity(AvpHeader::mandatory(AvpCode::DESTINATION_REALM), dest_realm);
    if let Some(h) = dest_host {
        b.identity(AvpHeader::mandatory(AvpCode::DESTINATION_HOST), h);
    }
    b.finish().unwrap()
}

/// A CER from `host` advertising `apps` (Auth-Application-Id).
pub fn cer(host: &str, realm: &str, apps: &[u32]) -> Vec<u8> {
    let mut b = MessageBuilder::request(
        CommandCode::CAPABILITIES_EXCHANGE,
        ApplicationId::COMMON,
        CommandFlags::NONE,
    );
    b.set_ids(1, 1);
    b.identity(AvpHeader::mandatory(AvpCode::ORIGIN_HOST), host);
    b.identity(AvpHeader::mandatory(AvpCode::ORIGIN_REALM), realm);
    b.ip_address(
        AvpHeader::mandatory(AvpCode::HOST_IP_ADDRESS),
        IpAddr::V4(Ipv4Addr::LOCALHOST),
    );
    b.u32(AvpHeader::mandatory(AvpCode::VENDOR_ID), 0);
    b.utf8(AvpHeader::new(AvpCode::PRODUCT_NAME), "raw");
    for app in apps {
        b.u32(AvpHeader::mandatory(AvpCode::AUTH_APPLICATION_ID), *app);
    }
    b.finish().unwrap()
}

impl World {
    /// A raw connection into `node` from `host`, capabilities exchanged; returns it and the
    /// CEA.
    pub fn raw_open(&mut self, node: usize, host: &str, realm: &str) -> (ConnectionId, Vec<u8>) {
        let conn = self.raw_accept(node);
        let (out, closed) = self.raw_exchange(node, conn, &cer(host, realm, &[APP.0]));
        assert!(!closed, "CER refused");
        (conn, out.into_iter().next().unwrap())
    }
}

// netviz interactive map: draws the embedded netviz.graph/1 document with Cytoscape.js.
// Every name comes from untrusted machines, so text reaches the DOM through textContent only
// and Cytoscape draws labels on a canvas. Positions were computed by netviz (no browser layout).
(function () {
  'use strict';

  var timings = { start: performance.now() };
  // A small map's data block is the graph document itself. A large map's (netviz/render/html.py,
  // compact_data) is a first line saying so, then its head and its body, each deflated and in
  // base64: the head (JSON) is what the first view needs; the body holds one line per host (the
  // flows whose client is on that host) and one per group, each decoded only when shown.
  var raw = document.getElementById('netviz-data').textContent;
  var firstEnd = raw.indexOf('\n');
  var first = JSON.parse(firstEnd < 0 ? raw : raw.slice(0, firstEnd));
  if (first.packed) {
    var packedHead = raw.slice(firstEnd + 1);
    raw = null;
    inflate(packedHead).then(function (text) { run(JSON.parse(text)); }, failed);
  } else {
    raw = null;
    run(first, null);
  }
  // base64 -> bytes -> the browser's own inflater (DecompressionStream: no library, no network).
  function inflate(base64) {
    var binary = atob(base64);
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return new Response(new Blob([bytes]).stream().pipeThrough(new DecompressionStream('deflate'))).text();
  }
  function failed(error) {
    var box = document.getElementById('notices');
    var line = document.createElement('p');
    line.textContent = 'This browser could not read the map\'s data (' + String(error) + '): a recent Chromium, Firefox or Safari can.';
    box.appendChild(line);
    box.hidden = false;
  }

  // The body is the page's last element (after this script): read once the document is parsed.
  function packedBody() {
    return new Promise(function (done) {
      if (document.readyState !== 'loading') done();
      else document.addEventListener('DOMContentLoaded', function () { done(); }, { once: true });
    }).then(function () { return inflate(document.getElementById('netviz-body').textContent); });
  }

  function run(payload) {
  var COMPACT = payload.compact === 1;
  // A large map's body, inflated after the first view is drawn (null until then).
  var body = null;
  var waiting = []; // what the user asked for before the body was there
  function whenBody(action) {
    return function () {
      var self = this, args = arguments;
      if (!COMPACT || body !== null) return action.apply(self, args);
      waiting.push(function () { action.apply(self, args); });
    };
  }
  timings.parsed = performance.now();
  var strings = COMPACT ? payload.strings : [];
  function str(index) { return index < 0 ? null : strings[index]; }
  var graph = COMPACT ? Object.assign({}, payload.graph, { hosts: payload.hosts }) : (payload.graph || {});
  var layout = payload.layout || { nodes: {}, machines: {} };
  var hosts = graph.hosts || [];
  // With an overview by group the nodes are in the body too (the groups need none of them): they
  // are decoded with it, just after the first view.
  var docNodes = COMPACT ? (payload.nodes ? decodeNodes(payload.nodes) : []) : (graph.nodes || []);
  var docFlows = COMPACT ? [] : (graph.flows || []); // compact: the flows of the lines decoded so far
  function decodeNodes(rowsByHost) {
    var nodes = [];
    rowsByHost.forEach(function (rows, index) {
      var host = String(payload.hosts[index].name);
      rows.forEach(function (row) {
        var node = {
          id: typeof row[0] === 'number' ? 'n' + row[0] : row[0], host: host, kind: str(row[1]), comm: str(row[2]),
          pids: row[3], users: row[4].map(str), contexts: row[5].map(str), cmdline: str(row[6]),
          listening: row[7].map(function (l) { return { proto: str(l[0]), address: str(l[1]), port: l[2] }; }),
          ingress: row[8], sockets: row[9],
        };
        if (row[10]) Object.assign(node, row[10]);
        nodes.push(node);
      });
    });
    return nodes;
  }
  // Past this size, trade some polish (edges hidden while panning, 1:1 pixels) for fluidity.
  var BIG = COMPACT || docNodes.length + docFlows.length > 2000;
  var MAX_LIST = 60;

  // ---- the model: machines, nodes, flows and their indexes ------------------------------

  var machines = new Map(); // name -> machine record
  var machineList = [];
  function machineFor(name) {
    var machine = machines.get(name);
    if (!machine) {
      machine = { name: name, index: machineList.length, host: null, nodes: [], flows: 0, hasIngress: false };
      machines.set(name, machine);
      machineList.push(machine);
    }
    return machine;
  }
  hosts.forEach(function (host) { machineFor(String(host.name)).host = host; });

  var nodeById = new Map();
  function registerNode(node) {
    nodeById.set(String(node.id), node);
    var machine = machineFor(String(node.host));
    machine.nodes.push(node);
    if ((node.ingress || []).length) machine.hasIngress = true;
  }
  docNodes.forEach(registerNode);
  var flowById = new Map();
  var flowsOf = new Map(); // node id -> {out: [], in: []}
  function flowSlot(id) {
    var slot = flowsOf.get(id);
    if (!slot) { slot = { out: [], in: [] }; flowsOf.set(id, slot); }
    return slot;
  }
  var usableFlows = docFlows.filter(function (flow) {
    return nodeById.has(String(flow.client)) && nodeById.has(String(flow.server));
  });
  usableFlows.forEach(function (flow) {
    flowById.set(String(flow.id), flow);
    flowSlot(String(flow.client)).out.push(flow);
    flowSlot(String(flow.server)).in.push(flow);
  });
  // A document already grouped by machine has no process level to show.
  var hasProcessLevel = COMPACT && payload.processLevel !== undefined ? payload.processLevel
    : docNodes.some(function (node) { return node.kind !== 'host'; });

  // ---- a large map's flows, decoded host by host ----------------------------------------

  var decodedLines = new Set(); // host indexes whose line of flows is decoded
  var peersOf = new Map(); // host index -> indexes of the hosts it has flows with
  function knowPeers(edges) {
    edges.forEach(function (edge) {
      [[edge[0], edge[1]], [edge[1], edge[0]]].forEach(function (pair) {
        if (!peersOf.has(pair[0])) peersOf.set(pair[0], new Set());
        peersOf.get(pair[0]).add(pair[1]);
      });
    });
  }
  if (COMPACT) knowPeers(payload.edges);
  // With an overview by group, the edges between hosts that touch a group's hosts are a line of
  // their own after the hosts' lines, decoded when the group opens.
  var groupLines = new Map(); // group index -> its summed host edges
  function groupEdgesOf(g) {
    if (!groupLines.has(g)) {
      var span = payload.lines[payload.hosts.length + g];
      var edges = span ? JSON.parse(body.substr(span[0], span[1])) : [];
      groupLines.set(g, edges);
      knowPeers(edges);
    }
    return groupLines.get(g);
  }
  function nodeRef(value) { return typeof value === 'number' ? 'n' + value : value; }
  function decodeLine(index) {
    if (!COMPACT || decodedLines.has(index) || index >= payload.hosts.length) return;
    decodedLines.add(index);
    var span = payload.lines[index];
    JSON.parse(body.substr(span[0], span[1])).forEach(function (row) {
      var flow = {
        id: typeof row[0] === 'number' ? 'f' + row[0] : row[0], client: nodeRef(row[1]), server: nodeRef(row[2]),
        proto: str(row[3]), server_port: row[4], server_address: str(row[5]), count: row[6],
        directed: (row[7] & 1) === 1, inferred: (row[7] & 2) === 2, via: str(row[8]),
        client_pids: row[9], server_pids: row[10],
      };
      if (row[11]) Object.assign(flow, row[11]);
      docFlows.push(flow);
      usableFlows.push(flow);
      flowById.set(flow.id, flow);
      flowSlot(flow.client).out.push(flow);
      flowSlot(flow.server).in.push(flow);
    });
  }
  // Everything a host's details and its opened view need: its flows out and in.
  function loadFlowsOf(machine) {
    if (!COMPACT) return;
    decodeLine(machine.index);
    (peersOf.get(machine.index) || new Set()).forEach(decodeLine);
  }
  function loadAllFlows() {
    if (COMPACT) payload.hosts.forEach(function (host, index) { decodeLine(index); });
  }

  function machineId(machine) { return 'machine:' + machine.index; }
  function machineNodeId(machine) { return 'machine-node:' + machine.index; }

  function list(value) { return Array.isArray(value) ? value : []; }
  function endpoint(address, port) {
    if (port === null || port === undefined) return String(address || '*');
    var text = String(address || '*');
    return (text.indexOf(':') >= 0 ? '[' + text + ']' : text) + ':' + port;
  }
  function nodeName(node) {
    if (!node) return '?';
    if (node.kind === 'host') return String(node.host);
    if (node.kind === 'outside') return 'outside';
    return String(node.comm === null || node.comm === undefined ? '?' : node.comm);
  }
  function describeIngress(ingress) {
    var text = String(ingress.kind || 'ingress');
    if (ingress.interface !== null && ingress.interface !== undefined) text += ' on ' + ingress.interface;
    if (ingress.protocol !== null && ingress.protocol !== undefined) text += ' protocol ' + ingress.protocol;
    return text;
  }
  function shorten(text, limit) {
    return text.length > limit ? text.slice(0, limit - 1) + '\u2026' : text;
  }
  function flowLabel(proto, port, count, via) {
    var text = String(proto || '');
    if (port !== null && port !== undefined) text += ' ' + port;
    if (count > 1) text += ' \u00d7' + count;
    if (via && via.length) text += ' via ' + via.join(',');
    return text;
  }
  // A flow an observation window saw come and go (its `persistent` is false), and its rate.
  function isShortLived(flow) { return flow.persistent === false; }
  // A diff map's change marks (netviz/diff_map.py: added, removed, unchanged, not compared; a
  // machine unreachable in one run) and a period map's flows seen in only some of its runs
  // (netviz/period.py), as classes the style draws; the legend gains a line for each one used.
  function markClasses(item) {
    var classes = [];
    if (item && item.change) classes.push('change-' + item.change);
    if (item && item.period && item.period.runs_seen < item.period.runs_taken) classes.push('sometimes');
    return classes;
  }
  function hostMarks(machine) {
    return markClasses(machine.host).map(function (name) { return ' ' + name; }).join('');
  }
  function sharedMarks(flows) { // a host-to-host edge: the marks all its flows share
    if (!flows.length) return [];
    return markClasses(flows[0]).filter(function (name) {
      return flows.every(function (flow) { return markClasses(flow).indexOf(name) >= 0; });
    });
  }
  function markWords(flow) {
    var text = '';
    if (flow.count_before !== undefined && flow.count_before !== null) text += ' (was \u00d7' + flow.count_before + ')';
    if (flow.change === 'added' || flow.change === 'removed') text += ' ' + flow.change;
    if (flow.change === 'not_compared') text += ' not compared';
    var period = flow.period;
    if (period && period.runs_seen < period.runs_taken) {
      text += ' seen in ' + Number(period.runs_seen).toLocaleString('en') + ' of ' + Number(period.runs_taken).toLocaleString('en') + ' runs';
    }
    return text;
  }
  var MARK_LEGEND = [
    ['change-added', '#1a7f37', 'solid', 'green: added (in B, not in A)'],
    ['change-removed', '#cf222e', 'dashed', 'red dashed: removed (in A, not in B)'],
    ['change-unchanged', '#a0a0a0', 'solid', 'grey: unchanged (in A and B; "was \u00d7N": its count in A)'],
    ['change-not_compared', '#c8c8c8', 'dotted', 'dotted: not compared (a host unreachable in A or B)'],
    ['change-unreachable', '#cd9b1d', 'dashed', 'gold dashed box: host unreachable in A or B'],
    ['sometimes', '#737373', 'dashed', 'grey dashed: seen in only some runs of the period'],
  ];
  function addMarkLegend() {
    var present = new Set();
    docFlows.concat(docNodes).concat(hosts).forEach(function (item) {
      markClasses(item).forEach(function (name) { present.add(name); });
    });
    var legendList = document.querySelector('#legend ul');
    MARK_LEGEND.forEach(function (entry) {
      if (!present.has(entry[0]) || !legendList) return;
      var line = document.createElement('li'), swatch = document.createElement('i');
      swatch.className = 'ln mark-' + entry[0];
      swatch.style.borderTop = '2px ' + entry[2] + ' ' + entry[1];
      line.appendChild(swatch);
      line.appendChild(document.createTextNode(entry[3]));
      legendList.appendChild(line);
    });
  }
  function rateText(flow) {
    var rate = Number(flow.per_minute) || 0;
    return '~' + (rate >= 1 ? Math.round(rate) : rate) + ' per minute';
  }
  // Traffic (TCP counters, only where captured): bytes both ways, and the edge width they give,
  // on the log scale of the DOT renderer (netviz/render/dot.py traffic_width).
  function flowBytes(flow) {
    var traffic = flow.traffic;
    if (!traffic) return 0;
    if (traffic.bytes_sent == null && traffic.bytes_received == null) {  // counted by conntrack only: IP bytes
      return (Number(traffic.ip_bytes_sent) || 0) + (Number(traffic.ip_bytes_received) || 0);
    }
    return (Number(traffic.bytes_sent) || 0) + (Number(traffic.bytes_received) || 0);
  }
  function trafficWidth(bytes) {
    return Math.max(1, Math.min(1 + (Math.log10(Math.max(bytes, 1)) - 3) * 0.7, 6));
  }
  function humanBytes(count) {
    if (count === null || count === undefined) return '?';
    var value = Number(count), units = ['B', 'kB', 'MB', 'GB', 'TB'];
    for (var k = 0; k < units.length; k++) {
      if (value < 1000 || k === units.length - 1) return k === 0 ? count + ' B' : value.toFixed(1) + ' ' + units[k];
      value /= 1000;
    }
    return '?';
  }
  function trafficText(traffic) {
    if (!traffic) return null;
    if (traffic.bytes_sent == null && traffic.bytes_received == null && traffic.ip_bytes_sent != null) {
      return humanBytes(traffic.ip_bytes_sent) + ' sent / ' + humanBytes(traffic.ip_bytes_received)
        + ' received (IP packets, headers included; ' + traffic.packets_sent + ' / ' + traffic.packets_received + ' packets)';
    }
    return humanBytes(traffic.bytes_sent) + ' sent / ' + humanBytes(traffic.bytes_received) + ' received';
  }
  function rttText(traffic) {
    if (!traffic || traffic.rtt_median_ms === null || traffic.rtt_median_ms === undefined) return null;
    return Number(traffic.rtt_median_ms).toPrecision(3) * 1 + ' ms median, ' + Number(traffic.rtt_max_ms).toPrecision(3) * 1 + ' ms max';
  }
  var hasWindow = COMPACT ? payload.window : docFlows.some(function (flow) { return flow.persistent !== undefined; });
  function machineLabel(machine) {
    var text = shorten(machine.name, 48);
    var host = machine.host;
    if (host && host.stale) text += ' (stale)';
    if (host && host.complete === false) text += ' (partial)';
    if (host && host.change_detail) text += ' (' + host.change_detail + ')';
    return text;
  }
  function outsideText(machine) {
    var outside = (machine.host && machine.host.outside) || {};
    var inbound = outside.inbound || 0, outbound = outside.outbound || 0;
    return inbound || outbound ? '  \u2014 outside: ' + inbound + ' in, ' + outbound + ' out' : '';
  }
  function machineOutsideLabel(machine) { return machineLabel(machine) + outsideText(machine); }
  // A host's box in the process view says where the host is: its first addresses.
  function addressText(machine) {
    var addresses = list(machine.host && machine.host.addresses).map(String);
    if (!addresses.length) return '';
    return ' \u00b7 ' + addresses.slice(0, 2).join(', ') + (addresses.length > 2 ? ' +' + (addresses.length - 2) : '');
  }
  function boxLabel(machine) { return machineLabel(machine) + addressText(machine); }
  function boxOutsideLabel(machine) { return boxLabel(machine) + outsideText(machine); }
  function runsAsRoot(node) { return list(node.users).indexOf('root') >= 0; }

  // ---- the two views, as Cytoscape element lists -------------------------------------

  function processLabel(node) {
    var listening = list(node.listening);
    var label = shorten(nodeName(node), 24);
    if (node.kind === 'process' && listening.length) {
      // One port per line entry, even when it listens on IPv4 and IPv6 alike.
      var ports = Array.from(new Set(listening.map(function (l) { return l.port; })));
      label += '\n' + ports.slice(0, 3).map(function (port) { return ':' + port; }).join(' ') + (ports.length > 3 ? ' \u2026' : '');
    }
    return label;
  }
  function position(id) {
    var xy = layout.nodes[id];
    return xy ? { x: xy[0], y: xy[1] } : { x: 0, y: 0 };
  }

  function processViewElements() {
    var elements = [];
    // A document grouped by machine has host nodes standing on their own: no boxes then.
    if (hasProcessLevel) machineList.forEach(function (machine) {
      // The box is a plain node drawn under the processes, sized by the layout. Cytoscape's
      // compound nodes would do the same, but their style updates cost quadratic time at scale.
      var box = layout.machines[machine.name] || [0, 0, 100, 100];
      elements.push({
        group: 'nodes',
        data: {
          id: machineId(machine), label: boxLabel(machine), labelOutside: boxOutsideLabel(machine),
          machine: machine.name, w: box[2], h: box[3],
        },
        position: { x: box[0], y: box[1] },
        classes: 'machine' + (machine.host && machine.host.stale ? ' stale' : '') + hostMarks(machine),
      });
    });
    docNodes.forEach(function (node) {
      var id = String(node.id);
      var machine = machines.get(String(node.host));
      var listening = list(node.listening);
      var label = processLabel(node);
      var classes = [node.kind || 'process'];
      if (listening.length) classes.push('listening');
      if (list(node.ingress).length) classes.push('ingress');
      if (node.short_lived) classes.push('short-lived');
      classes = classes.concat(markClasses(node));
      if (runsAsRoot(node)) classes.push('root');
      var element = { group: 'nodes', data: { id: id, label: label, kind: node.kind }, position: position(id), classes: classes.join(' ') };
      element.data.machine = machine.name;
      elements.push(element);
      list(node.ingress).slice(0, 4).forEach(function (ingress, k) {
        var at = position(id);
        var markId = 'ingress:' + id + ':' + k;
        var markData = { id: markId, label: shorten(String(ingress.interface || ingress.kind || 'ingress'), 12), of: id };
        markData.machine = machine.name;
        elements.push({ group: 'nodes', data: markData, position: { x: at.x - 44 + k * 14, y: at.y - 22 }, classes: 'ingress-mark' });
        elements.push({ group: 'edges', data: { id: 'ingress-edge:' + id + ':' + k, source: markId, target: id }, classes: 'ingress-mark' });
      });
    });
    usableFlows.forEach(function (flow) {
      var classes = [];
      if (flow.directed === false) classes.push('undirected');
      if (flow.inferred) classes.push('inferred');
      if (flow.via) classes.push('nat');
      if (String(flow.client) === String(flow.server)) classes.push('loop');
      if (isShortLived(flow)) classes.push('short-lived');
      classes = classes.concat(markClasses(flow));
      var count = flow.count || 1;
      var label = flowLabel(flow.proto, flow.server_port, count, flow.via ? [String(flow.via)] : null);
      if (isShortLived(flow)) label += ' ' + rateText(flow);
      label += markWords(flow);
      var data = {
        id: String(flow.id), source: String(flow.client), target: String(flow.server), flow: String(flow.id),
        label: label, weight: count,
      };
      var bytes = flowBytes(flow);
      if (bytes > 0) { data.bw = trafficWidth(bytes); data.bytes = bytes; data.label += ' ' + humanBytes(bytes); }
      elements.push({ group: 'edges', data: data, classes: classes.join(' ') });
    });
    if (usableFlows.length <= DETOUR_MAX_FLOWS) bendAroundNodes(elements);
    return elements;
  }

  // An edge whose straight line would cross a node it does not join (a process between two
  // others of a machine's grid, or of the machines between two) bends around it: the smallest
  // bend, on either side, whose curve keeps clear of every other node and label, and whose own
  // label lands clear of the labels placed before it. The edges of one pair of nodes bend alike,
  // fanned out around that bend.
  var DETOUR_BENDS = [40, 64, 96, 136, 184, 240, 320, 420];
  var DETOUR_FAN = 16, EDGE_FONT = 9;
  var DETOUR_MAX_FLOWS = 400; // past this the search costs the first view seconds; such maps open on the host view
  function nodeObstacle(element) {
    var lines = String(element.data.label || '').split('\n'), wide = 0;
    lines.forEach(function (line) { wide = Math.max(wide, textWidth(line, 10)); });
    var half = Math.max(12, Math.min(58, wide / 2 + 2)), at = element.position;
    return { id: element.data.id, x1: at.x - half, x2: at.x + half, y1: at.y - 12, y2: at.y + 14 + 12 * lines.length };
  }
  // The curve from a to b whose control point is `bend` off the midpoint, to the left of a -> b
  // as Cytoscape measures: its points, and the box of a label of `wide` pixels drawn along it at
  // its middle (where the tangent is parallel to a -> b).
  function detourCurve(a, b, bend, wide, lanes) {
    var dx = b.x - a.x, dy = b.y - a.y, length = Math.sqrt(dx * dx + dy * dy) || 1;
    var nx = -dy / length, ny = dx / length;
    var cx = (a.x + b.x) / 2 + nx * bend, cy = (a.y + b.y) / 2 + ny * bend, points = [];
    for (var step = 1; step < 32; step++) {
      var t = step / 32, u = 1 - t;
      points.push([u * u * a.x + 2 * u * t * cx + t * t * b.x, u * u * a.y + 2 * u * t * cy + t * t * b.y]);
    }
    var mx = (a.x + b.x) / 2 + nx * bend / 2, my = (a.y + b.y) / 2 + ny * bend / 2;
    var along = Math.abs(dx / length), across = Math.abs(dy / length), high = EDGE_FONT + 4 + DETOUR_FAN * (lanes - 1);
    var halfW = (along * wide + across * high) / 2, halfH = (across * wide + along * high) / 2;
    return { points: points, label: { id: null, x1: mx - halfW, x2: mx + halfW, y1: my - halfH, y2: my + halfH } };
  }
  function detourCost(curve, obstacles, labels) {
    var hit = new Set(), all = obstacles.concat(labels);
    curve.points.forEach(function (point) {
      all.forEach(function (o, k) {
        if (point[0] > o.x1 && point[0] < o.x2 && point[1] > o.y1 && point[1] < o.y2) hit.add(k);
      });
    });
    var box = curve.label, overlaps = labels.filter(function (o) {
      return box.x1 < o.x2 && o.x1 < box.x2 && box.y1 < o.y2 && o.y1 < box.y2;
    }).length;
    return hit.size + overlaps;
  }
  // Whether a box is within reach of a curve between a and b (the largest bend, and a label).
  function nearPair(a, b) {
    var reach = DETOUR_BENDS[DETOUR_BENDS.length - 1] / 2 + 120;
    var x1 = Math.min(a.x, b.x) - reach, x2 = Math.max(a.x, b.x) + reach, y1 = Math.min(a.y, b.y) - reach, y2 = Math.max(a.y, b.y) + reach;
    return function (o) { return o.x2 > x1 && o.x1 < x2 && o.y2 > y1 && o.y1 < y2; };
  }
  function bendAroundNodes(elements) {
    var obstacles = [], at = new Map(), pairs = new Map(), labels = [];
    elements.forEach(function (element) {
      if (element.group !== 'nodes') return;
      at.set(element.data.id, element.position);
      if (!/\b(machine|ingress-mark)\b/.test(element.classes || '')) obstacles.push(nodeObstacle(element));
    });
    elements.forEach(function (element) {
      var data = element.data;
      if (element.group !== 'edges' || !data.flow || data.source === data.target) return;
      var key = data.source < data.target ? data.source + '\u0000' + data.target : data.target + '\u0000' + data.source;
      if (!pairs.has(key)) pairs.set(key, []);
      pairs.get(key).push(element);
    });
    var blocked = [];
    pairs.forEach(function (edges) {
      var first = edges[0].data, low = first.source < first.target;
      var pair = { edges: edges, a: at.get(low ? first.source : first.target), b: at.get(low ? first.target : first.source), wide: 0 };
      if (!pair.a || !pair.b) return;
      edges.forEach(function (element) { pair.wide = Math.max(pair.wide, textWidth(String(element.data.label || ''), EDGE_FONT)); });
      pair.near = nearPair(pair.a, pair.b);
      pair.obstacles = obstacles.filter(function (o) { return o.id !== first.source && o.id !== first.target && pair.near(o); });
      var straight = detourCurve(pair.a, pair.b, 0, pair.wide, edges.length);
      if (detourCost(straight, pair.obstacles, [])) blocked.push(pair);
      else labels.push(straight.label); // drawn as it is: later bends keep clear of its label
    });
    blocked.forEach(function (pair) {
      var best = null, fewest = Infinity, nearLabels = labels.filter(pair.near);
      [0].concat(DETOUR_BENDS).forEach(function (size) {
        if (fewest === 0) return;
        [size, -size].forEach(function (bend) {
          if (fewest === 0 || (size === 0 && bend !== 0)) return;
          var curve = detourCurve(pair.a, pair.b, bend, pair.wide, pair.edges.length), cost = detourCost(curve, pair.obstacles, nearLabels);
          if (cost < fewest) { fewest = cost; best = { bend: bend, label: curve.label }; }
        });
      });
      labels.push(best.label);
      if (best.bend === 0) return;
      pair.edges.forEach(function (element, k) {
        var forward = element.data.source < element.data.target ? 1 : -1; // bends are measured per direction
        element.data.bend = forward * (best.bend + (k - (pair.edges.length - 1) / 2) * DETOUR_FAN);
        element.classes = (element.classes ? element.classes + ' ' : '') + 'detour';
      });
    });
  }

  // Host view: one node per host on a ring (netviz ordered it so that hosts that talk sit side
  // by side), labels radial so that neighbours never overprint, each flow between two hosts a
  // curve bent toward the centre: it leaves its host inward and crosses no other host. A host
  // can be expanded in place into its processes. Flows between the same two hosts fold into one
  // edge per direction, direct and translated (via NAT) apart.
  var ring = layout.ring || {};
  var RING_FONT = 16, RING_GAP = 6, RING_BEND = 0.3, RING_PARALLEL = 14;
  // Past this many links between hosts the host view draws the busiest (every host keeps its own
  // busiest, so none looks alone); the rest are kept out of Cytoscape (even hidden, each would
  // cost its style at start-up) and added while their host is focused, while a search matches
  // their flows, or when the user asks for all. Thousands of curves read as a grey disc anyway.
  var RING_LINKS_DRAWN = 1500;
  var ringLinks = { total: 0, drawn: 0 };
  var undrawnLinks = new Map(); // link id -> its element, not in Cytoscape unless shown for now
  var undrawnByEnd = new Map(); // host node id -> ids of its undrawn links
  var linksShown = new Set(); // undrawn links in Cytoscape for now
  var linksWanted = { focus: new Set(), search: new Set() }; // and why
  var expanded = new Set(); // names of hosts drawn as their processes in the host view
  var aggregated = new Map(); // aggregated edge id -> list of flows
  var pendingEdges = new Map(); // large map: aggregated edge id -> the summed edges whose flows are not decoded yet
  var measure = document.createElement('canvas').getContext('2d');
  function textWidth(text, size) {
    measure.font = size + 'px Helvetica Neue, Helvetica, sans-serif';
    return measure.measureText(text).width;
  }
  // A large map's layout is computed here from the ring order netviz wrote (the same ring as
  // ring_layout), or, with groups, from the groups: one node per group on a ring (room for each
  // group's own circle), the hosts of an opened group on a circle round its place.
  var RING_STEP = 22, RING_MIN_RADIUS = 220, GROUP_GAP = 220;
  var groups = COMPACT ? payload.groups || [] : [];
  var groupOf = new Map(); // host index -> group index
  var groupSpots = [];
  var openGroups = new Set(); // indexes of groups drawn as their hosts
  if (COMPACT) (function () {
    if (!groups.length) {
      var radius = Math.max(RING_MIN_RADIUS, payload.ring.length * RING_STEP / (2 * Math.PI));
      payload.ring.forEach(function (index, k) {
        var angle = -Math.PI / 2 + 2 * Math.PI * k / Math.max(1, payload.ring.length);
        ring[String(payload.hosts[index].name)] = [radius * Math.cos(angle), radius * Math.sin(angle), angle];
      });
      return;
    }
    var sizes = groups.map(function (group) { return Math.max(60, group.hosts.length * RING_STEP / (2 * Math.PI)); });
    var around = sizes.reduce(function (sum, r) { return sum + 2 * r + GROUP_GAP; }, 0);
    var big = Math.max(300, around / (2 * Math.PI));
    var along = 0;
    groups.forEach(function (group, g) {
      along += sizes[g] + GROUP_GAP / 2;
      var angle = -Math.PI / 2 + 2 * Math.PI * along / around;
      along += sizes[g] + GROUP_GAP / 2;
      var spot = { x: big * Math.cos(angle), y: big * Math.sin(angle), angle: angle, r: sizes[g] };
      groupSpots.push(spot);
      group.hosts.forEach(function (index, k) {
        groupOf.set(index, g);
        var a = angle + 2 * Math.PI * k / group.hosts.length;
        ring[String(payload.hosts[index].name)] = [spot.x + spot.r * Math.cos(a), spot.y + spot.r * Math.sin(a), a, g];
      });
    });
  })();
  function groupNodeId(g) { return 'group:' + g; }
  function groupOpen(machine) { return !groups.length || !groupOf.has(machine.index) || openGroups.has(groupOf.get(machine.index)); }
  // Is the host drawn as its processes? (In a closed group too: opening one host of the
  // overview draws that host, beside its group's node, not the group's hundred hosts.)
  function isOpen(machine) { return hasProcessLevel && expanded.has(machine.name); }
  // The groups whose edges between hosts the view needs: the open ones, and those of open hosts.
  function lineGroups() {
    var needed = new Set(openGroups);
    expanded.forEach(function (name) {
      var machine = machines.get(name);
      if (machine && groupOf.has(machine.index)) needed.add(groupOf.get(machine.index));
    });
    return needed;
  }
  // Where the host view draws what touches a host that is not open: its node, or its group's.
  function endOfHost(machine) { return groupOpen(machine) ? machineNodeId(machine) : groupNodeId(groupOf.get(machine.index)); }
  function ringSpot(machine) {
    var spot = ring[machine.name];
    if (spot) return { x: spot[0], y: spot[1], angle: spot[2], centre: spot.length > 3 ? groupSpots[spot[3]] : null };
    var box = layout.machines[machine.name] || [0, 0];
    return { x: box[0], y: box[1], angle: 0, centre: null };
  }
  // A large map's host box: processes on a grid as compute_layout lays them (the same steps).
  function gridBox(machine) {
    var inside = machine.nodes.filter(function (node) { return node.kind !== 'host'; });
    var columns = Math.max(1, Math.ceil(Math.sqrt(inside.length * 1.6)));
    var rows = Math.max(1, Math.ceil(inside.length / columns));
    var box = { w: columns * 120 + 80, h: rows * 64 + 80, at: new Map() };
    inside.forEach(function (node, slot) {
      box.at.set(String(node.id), { x: -box.w / 2 + 40 + 60 + (slot % columns) * 120, y: -box.h / 2 + 40 + 32 + Math.floor(slot / columns) * 64 });
    });
    return box;
  }
  // Where a label sits so that it starts just outside its node, along the radius, read left to right.
  function radialLabel(text, angle, size) {
    var reach = size / 2 + RING_GAP + textWidth(text, RING_FONT) / 2;
    var right = Math.cos(angle) >= -1e-9;
    return { mx: reach * Math.cos(angle), my: reach * Math.sin(angle), rot: right ? angle : angle + Math.PI };
  }
  function processCount(machine) { return machine.nodes.filter(function (node) { return node.kind === 'process'; }).length; }
  // An expanded host's box goes inward from its place on the ring, its processes on their grid.
  function expandedBox(machine) {
    var spot = ringSpot(machine);
    var grid = COMPACT ? gridBox(machine) : null;
    var box = grid ? [0, 0, grid.w, grid.h] : layout.machines[machine.name] || [0, 0, 100, 100];
    var radius = Math.sqrt(spot.x * spot.x + spot.y * spot.y);
    var inward = Math.max(0, radius - Math.max(box[2], box[3]) / 2 - 40);
    var scale = radius ? inward / radius : 0;
    return { x: spot.x * scale, y: spot.y * scale, dx: spot.x * scale - box[0], dy: spot.y * scale - box[1], w: box[2], h: box[3], grid: grid };
  }
  function hostNodeElement(machine) {
    var spot = ringSpot(machine);
    var size = Math.min(16, 8 + Math.sqrt(processCount(machine)));
    // Only the name: outside counts would make every label of a ring three times as long (they
    // are in the host's details).
    var label = machineLabel(machine);
    var plain = radialLabel(label, spot.angle, size);
    return {
      group: 'nodes',
      data: {
        id: machineNodeId(machine), label: label, labelOutside: label, machine: machine.name, size: size,
        mx: plain.mx, my: plain.my, rot: plain.rot, reach: textWidth(label, RING_FONT) / 2 + RING_FONT / 2,
        loopDir: (Math.atan2(-Math.cos(spot.angle), Math.sin(spot.angle)) * 180 / Math.PI) + 'deg',
      },
      position: { x: spot.x, y: spot.y },
      classes: 'machine-node' + (machine.hasIngress ? ' has-ingress' : '') + (machine.host && machine.host.stale ? ' stale' : '') + hostMarks(machine),
    };
  }
  function expandedElements(machine) {
    var at = expandedBox(machine);
    var elements = [{
      group: 'nodes',
      data: { id: machineId(machine), label: boxLabel(machine), labelOutside: boxOutsideLabel(machine), machine: machine.name, w: at.w, h: at.h },
      position: { x: at.x, y: at.y },
      classes: 'machine expanded' + (machine.host && machine.host.stale ? ' stale' : '') + hostMarks(machine),
    }];
    machine.nodes.forEach(function (node) {
      if (node.kind === 'outside') return;
      var id = String(node.id), xy = at.grid ? at.grid.at.get(id) || { x: 0, y: 0 } : position(id);
      var classes = [node.kind || 'process'];
      if (list(node.listening).length) classes.push('listening');
      if (list(node.ingress).length) classes.push('ingress');
      if (node.short_lived) classes.push('short-lived');
      classes = classes.concat(markClasses(node));
      if (runsAsRoot(node)) classes.push('root');
      elements.push({ group: 'nodes', data: { id: id, label: processLabel(node), kind: node.kind, machine: machine.name },
        position: { x: xy.x + at.dx, y: xy.y + at.dy }, classes: classes.join(' ') });
    });
    return elements;
  }
  // The control point of a curve between two hosts on the ring, as Cytoscape's distance from the
  // midpoint of source -> target (positive to the left of that direction, as Cytoscape measures).
  // Two hosts of one opened group bend toward their group's centre, all else toward the ring's.
  function ringBend(source, target, offset, centre) {
    var mx = (source.x + target.x) / 2, my = (source.y + target.y) / 2;
    var dx = target.x - source.x, dy = target.y - source.y, length = Math.sqrt(dx * dx + dy * dy) || 1;
    var nx = -dy / length, ny = dx / length;
    var cx = centre ? centre.x : 0, cy0 = centre ? centre.y : 0;
    var qx = cx + (mx - cx) * RING_BEND, qy = cy0 + (my - cy0) * RING_BEND;
    return (qx - mx) * nx + (qy - my) * ny + offset;
  }
  function groupNodeElement(g) {
    var group = groups[g], spot = groupSpots[g];
    var label = shorten(String(group.name), 40) + ' (' + group.hosts.length + ' hosts)';
    var size = Math.min(44, 14 + 2 * Math.sqrt(group.hosts.length));
    var plain = radialLabel(label, spot.angle, size);
    return {
      group: 'nodes',
      data: {
        id: groupNodeId(g), label: label, labelOutside: label, groupIndex: g, size: size,
        mx: plain.mx, my: plain.my, rot: plain.rot, reach: textWidth(label, RING_FONT) / 2 + RING_FONT / 2,
        loopDir: (Math.atan2(-Math.cos(spot.angle), Math.sin(spot.angle)) * 180 / Math.PI) + 'deg',
      },
      position: { x: spot.x, y: spot.y },
      classes: 'group-node',
    };
  }
  // The keys of the host view's links left undrawn (class 'minor'): none while they are few or
  // the user asked for all; else all but the busiest RING_LINKS_DRAWN, each host keeping its own
  // busiest link. Busiest: most connections, then most bytes; ties by key, so a page reopens alike.
  function minorRingLinks(byKey, onRing) {
    var links = [];
    byKey.forEach(function (edge) {
      if (edge.source !== edge.target && onRing(edge.source) && onRing(edge.target)) links.push(edge);
    });
    var minor = new Set();
    ringLinks = { total: links.length, drawn: links.length };
    if (state.showAllLinks || links.length <= RING_LINKS_DRAWN) return minor;
    links.sort(function (a, b) { return b.count - a.count || b.bytes - a.bytes || (a.key < b.key ? -1 : 1); });
    var kept = new Set(), hostsWithLink = new Set();
    links.forEach(function (edge) {
      [edge.source, edge.target].forEach(function (end) {
        if (!hostsWithLink.has(end)) { hostsWithLink.add(end); kept.add(edge.key); }
      });
    });
    for (var i = 0; i < links.length && kept.size < RING_LINKS_DRAWN; i++) kept.add(links[i].key);
    links.forEach(function (edge) { if (!kept.has(edge.key)) minor.add(edge.key); });
    ringLinks.drawn = links.length - minor.size;
    return minor;
  }
  function hostViewElements() {
    var elements = [];
    aggregated = new Map();
    pendingEdges = new Map();
    var drawnGroups = new Set();
    machineList.forEach(function (machine) {
      if (!groupOpen(machine)) {
        var g = groupOf.get(machine.index);
        if (!drawnGroups.has(g)) { drawnGroups.add(g); elements.push(groupNodeElement(g)); }
        if (isOpen(machine)) elements = elements.concat(expandedElements(machine));
      } else if (isOpen(machine)) elements = elements.concat(expandedElements(machine));
      else elements.push(hostNodeElement(machine));
    });
    // Flows to peers outside the group are counted on the host's label (the external toggle).
    function endOf(node) {
      if (!node || node.kind === 'outside') return null;
      var machine = machines.get(String(node.host));
      return isOpen(machine) ? String(node.id) : endOfHost(machine);
    }
    var byKey = new Map();
    // A NAT edge names its translating host, or the host's group while that group is closed (one
    // edge per group, not one per translating host).
    function viaName(via) {
      var machine = via ? machines.get(via) : null;
      return machine && !groupOpen(machine) ? String(groups[groupOf.get(machine.index)].name) : via;
    }
    function edgeFor(source, target, via, directed) {
      // Between groups, all translated flows of a pair are one edge ("via NAT"; the details name
      // each flow's translating host): one per translating group would multiply the overview's edges.
      via = via && (source.indexOf('group:') === 0 || target.indexOf('group:') === 0) ? 'NAT' : viaName(via);
      if (!directed && target < source) { var swap = source; source = target; target = swap; }
      var key = [source, target, via, directed].join('|');
      var edge = byKey.get(key);
      if (!edge) {
        edge = { key: key, source: source, target: target, via: via, directed: directed, count: 0, services: new Map(), flows: [],
          pending: [], flowCount: 0, shortLived: 0, bytes: 0, more: false };
        byKey.set(key, edge);
      }
      return edge;
    }
    function addFlow(flow) {
      var source = endOf(nodeById.get(String(flow.client)));
      var target = endOf(nodeById.get(String(flow.server)));
      if (source === null || target === null) return;
      var edge = edgeFor(source, target, flow.via ? String(flow.via) : '', flow.directed !== false);
      var count = flow.count || 1;
      edge.count += count;
      var service = String(flow.proto || '') + (flow.server_port === null || flow.server_port === undefined ? '' : ' ' + flow.server_port);
      edge.services.set(service, (edge.services.get(service) || 0) + count);
      edge.flows.push(flow);
      edge.flowCount += 1;
      if (isShortLived(flow)) edge.shortLived += 1;
      edge.bytes += flowBytes(flow);
    }
    if (!COMPACT) usableFlows.forEach(addFlow);
    else {
      // The edges between hosts netviz summed; a host drawn as its processes has its own flows.
      var seen = new Set();
      machineList.forEach(function (machine) {
        if (!isOpen(machine)) return;
        loadFlowsOf(machine);
        machine.nodes.forEach(function (node) {
          var slot = flowsOf.get(String(node.id));
          if (slot) [slot.out, slot.in].forEach(function (flows) {
            flows.forEach(function (flow) { if (!seen.has(flow.id)) { seen.add(flow.id); addFlow(flow); } });
          });
        });
      });
      var hostEdges = payload.edges;
      if (groups.length) {
        hostEdges = [];
        var needed = lineGroups();
        needed.forEach(function (g) {
          groupEdgesOf(g).forEach(function (summed) {
            // An edge between two such groups is in both their lines: take it from the first.
            var ga = groupOf.get(summed[0]), gb = groupOf.get(summed[1]);
            if (ga === gb || g === Math.min(ga, gb) || !needed.has(ga === g ? gb : ga)) hostEdges.push(summed);
          });
        });
        // Between two other groups: netviz summed them (translated flows as one, "via NAT").
        payload.groupEdges.forEach(function (summed) {
          if (needed.has(summed[0]) || needed.has(summed[1])) return;
          var edge = edgeFor(groupNodeId(summed[0]), groupNodeId(summed[1]), summed[2] ? 'NAT' : '', summed[3] === 1);
          addSummed(edge, summed, { group: true });
        });
      }
      hostEdges.forEach(function (summed) {
        var a = machineList[summed[0]], b = machineList[summed[1]];
        if (isOpen(a) || isOpen(b)) return;
        var edge = edgeFor(endOfHost(a), endOfHost(b), summed[2] < 0 ? '' : str(summed[2]), summed[3] === 1);
        addSummed(edge, summed, null);
      });
    }
    function addSummed(edge, summed, kind) {
      {
        edge.count += summed[4];
        edge.flowCount += summed[5];
        edge.shortLived += summed[6];
        edge.bytes += summed[7];
        summed[8].forEach(function (service) {
          if (service[0] < 0) { edge.more = true; return; }
          var name = strings[service[0]];
          edge.services.set(name, (edge.services.get(name) || 0) + service[1]);
        });
        edge.pending.push(kind ? { group: summed } : summed);
      }
    }
    var lookup = new Map();
    elements.forEach(function (element) { if (element.group === 'nodes') lookup.set(element.data.id, element); });
    function cyPositionOf(id) {
      var element = lookup.get(id);
      if (!element) return { x: 0, y: 0, ring: false };
      var onRing = element.classes.indexOf('machine-node') === 0 || element.classes.indexOf('group-node') === 0;
      var machine = element.data.machine !== undefined ? machines.get(element.data.machine) : null;
      return { x: element.position.x, y: element.position.y, ring: onRing, loopDir: element.data.loopDir,
        centre: machine && onRing ? ringSpot(machine).centre : null };
    }
    var minor = minorRingLinks(byKey, function (id) { return cyPositionOf(id).ring; });
    // A new host view: what was shown for now goes with the old one.
    undrawnLinks = new Map();
    undrawnByEnd = new Map();
    linksShown = new Set();
    linksWanted = { focus: new Set(), search: new Set() };
    // Parallel edges between one pair of hosts (two directions, direct and via NAT) side by side.
    var pairs = new Map();
    byKey.forEach(function (edge) {
      var pair = edge.source < edge.target ? edge.source + '|' + edge.target : edge.target + '|' + edge.source;
      if (!pairs.has(pair)) pairs.set(pair, []);
      pairs.get(pair).push(edge);
    });
    pairs.forEach(function (edges) {
      edges.forEach(function (edge, k) {
        // Named by its ends: opening a host replaces only the edges that change.
        var id = 'machine-flow:' + edge.key;
        aggregated.set(id, edge.flows);
        if (edge.pending.length) pendingEdges.set(id, edge.pending);
        var services = Array.from(edge.services).sort(function (a, b) { return b[1] - a[1] || (a[0] < b[0] ? -1 : 1); });
        var label = services.slice(0, 3).map(function (s) { return s[0] + (s[1] > 1 ? ' \u00d7' + s[1] : ''); }).join(', ') +
          (services.length > 3 || edge.more ? ', \u2026' : '') + (edge.via ? ' via ' + edge.via : '');
        var classes = [];
        if (!edge.directed) classes.push('undirected');
        if (edge.via) classes.push('nat');
        if (edge.source === edge.target) classes.push('loop');
        if (edge.shortLived === edge.flowCount) classes.push('short-lived');
        classes = classes.concat(sharedMarks(edge.flows || []));
        var data = { id: id, source: edge.source, target: edge.target, label: label, weight: edge.count };
        if (edge.bytes > 0) { data.bw = trafficWidth(edge.bytes); data.bytes = edge.bytes; }
        var source = cyPositionOf(edge.source), target = cyPositionOf(edge.target);
        if (source.ring && target.ring && edge.source !== edge.target) {
          // The pair's edges fan out around the bend, in a side fixed by the pair (not the direction).
          var forward = edge.source < edge.target ? 1 : -1;
          var centre = source.centre && source.centre === target.centre ? source.centre : null;
          data.bend = ringBend(source, target, forward * (k - (edges.length - 1) / 2) * RING_PARALLEL, centre);
          classes.push('ring-edge');
          if (minor.has(edge.key)) {
            classes.push('minor');
            var link = { group: 'edges', data: data, classes: classes.join(' ') };
            undrawnLinks.set(id, link);
            [edge.source, edge.target].forEach(function (end) {
              if (!undrawnByEnd.has(end)) undrawnByEnd.set(end, []);
              undrawnByEnd.get(end).push(id);
            });
            return;
          }
        } else if (edge.source === edge.target && source.ring) {
          data.loopDir = source.loopDir;
          classes.push('ring-loop');
        }
        if (byKey.size <= 60) classes.push('labelled'); // few enough to read every label
        elements.push({ group: 'edges', data: data, classes: classes.join(' ') });
      });
    });
    return elements;
  }

  // ---- drawing -------------------------------------------------------------------------

  var style = [
    // Cytoscape's defaults (ellipse, black text, centred, grey #999 edges) are left unsaid on
    // purpose: each property set here costs start-up time for every element it applies to.
    { selector: 'node', style: {
      'width': 16, 'height': 16, 'background-color': '#4a78c2', 'label': 'data(label)',
      'font-size': 10, 'text-valign': 'bottom', 'text-margin-y': 3,
      'text-wrap': 'wrap', 'text-max-width': 112, 'min-zoomed-font-size': 7 } },
    { selector: 'node.listening', style: { 'shape': 'round-rectangle', 'background-color': '#23895a' } },
    { selector: 'node.ingress', style: { 'border-width': 2, 'border-color': '#e07b00' } },
    { selector: 'node.outside', style: { 'shape': 'diamond', 'background-color': '#8a8f98', 'width': 20, 'height': 20 } },
    { selector: 'node.host', style: { 'shape': 'round-rectangle', 'width': 40, 'height': 28, 'background-color': '#5b7fb8', 'font-size': 12 } },
    { selector: 'node.machine', style: {
      'z-compound-depth': 'bottom', 'width': 'data(w)', 'height': 'data(h)', 'shape': 'round-rectangle', 'background-color': '#e9eef6', 'background-opacity': 0.85, 'border-width': 1,
      'border-color': '#93a3bb', 'text-valign': 'top', 'text-margin-y': -4,
      'font-size': 15, 'font-weight': 'bold', 'color': '#2b3648', 'min-zoomed-font-size': 5,
      'text-wrap': 'none' } },
    { selector: 'node.machine.with-outside, node.machine-node.with-outside', style: { 'label': 'data(labelOutside)' } },
    { selector: 'node.machine-node', style: {
      'shape': 'round-rectangle', 'width': 'data(size)', 'height': 'data(size)', 'background-color': '#5b7fb8',
      'font-size': RING_FONT, 'min-zoomed-font-size': 6, 'text-wrap': 'none', 'text-valign': 'center', 'text-halign': 'center',
      'text-margin-x': 'data(mx)', 'text-margin-y': 'data(my)', 'text-rotation': 'data(rot)' } },
    { selector: 'node.root', style: { 'outline-width': 1.5, 'outline-color': '#c62828', 'outline-offset': 1.5 } },
    { selector: 'node.machine-node.has-ingress.show-ingress', style: { 'border-width': 3, 'border-color': '#e07b00' } },
    { selector: 'node.stale', style: { 'border-style': 'dashed', 'border-width': 2 } },
    { selector: 'node.ingress-mark', style: {
      'shape': 'triangle', 'width': 11, 'height': 11, 'background-color': '#e07b00', 'font-size': 8,
      'text-valign': 'top', 'text-margin-y': -2, 'color': '#a35400' } },
    { selector: 'edge', style: {
      'width': 'mapData(weight, 1, 40, 1.2, 5)',
      'target-arrow-shape': 'triangle', 'curve-style': BIG ? 'straight' : 'bezier',
      'label': 'data(label)', 'font-size': 9, 'min-zoomed-font-size': 8 } },
    // Every style property costs start-up time per edge, so big maps go without these niceties.
    BIG ? { selector: 'edge.highlight', style: { 'text-rotation': 'autorotate' } } : { selector: 'edge', style: {
      'text-rotation': 'autorotate', 'text-background-color': '#ffffff', 'text-background-opacity': 0.85, 'text-background-padding': 1 } },
    { selector: 'edge.loop', style: { 'curve-style': 'bezier', 'loop-direction': '-45deg', 'loop-sweep': '-60deg' } },
    { selector: 'edge.undirected', style: { 'target-arrow-shape': 'none' } },
    { selector: 'edge.inferred', style: { 'line-style': 'dashed' } },
    { selector: 'edge.short-lived', style: { 'line-style': 'dashed', 'line-dash-pattern': [4, 3], 'line-color': '#b07d1a', 'target-arrow-color': '#b07d1a' } },
    { selector: 'node.short-lived', style: { 'background-color': '#c9ccd2', 'border-width': 1, 'border-style': 'dashed', 'border-color': '#6d737d' } },
    { selector: 'edge.nat', style: { 'line-color': '#8e44ad', 'target-arrow-color': '#8e44ad', 'color': '#6c2f87' } },
    // Diff and period maps (markClasses): added green, removed red dashed, unchanged grey,
    // not compared dotted, a host unreachable in one run gold dashed; seen in some runs: dashed.
    { selector: 'edge.change-added', style: { 'line-color': '#1a7f37', 'target-arrow-color': '#1a7f37', 'color': '#1a7f37', 'width': 2.5 } },
    { selector: 'edge.change-removed', style: { 'line-color': '#cf222e', 'target-arrow-color': '#cf222e', 'color': '#cf222e', 'line-style': 'dashed' } },
    { selector: 'edge.change-unchanged', style: { 'line-color': '#a0a0a0', 'target-arrow-color': '#a0a0a0', 'color': '#555555' } },
    { selector: 'edge.change-not_compared', style: { 'line-color': '#c8c8c8', 'target-arrow-color': '#c8c8c8', 'line-style': 'dotted', 'color': '#777777' } },
    { selector: 'edge.sometimes', style: { 'line-color': '#737373', 'target-arrow-color': '#737373', 'line-style': 'dashed' } },
    { selector: 'node.change-added', style: { 'border-width': 3, 'border-color': '#1a7f37' } },
    { selector: 'node.change-removed', style: { 'border-width': 2, 'border-style': 'dashed', 'border-color': '#cf222e' } },
    { selector: 'node.change-unchanged', style: { 'border-width': 1, 'border-color': '#a0a0a0' } },
    { selector: 'node.change-not_compared', style: { 'border-width': 2, 'border-style': 'dotted', 'border-color': '#b0b0b0' } },
    { selector: 'node.change-unreachable', style: { 'border-width': 3, 'border-style': 'dashed', 'border-color': '#cd9b1d' } },
    // Host view: curves bent toward the centre of the ring; their labels only when few or chosen.
    { selector: 'edge.ring-edge', style: {
      'curve-style': 'unbundled-bezier', 'control-point-distances': 'data(bend)', 'control-point-weights': 0.5,
      'edge-distances': 'node-position', 'label': '', 'arrow-scale': 0.7, 'width': 'mapData(weight, 1, 200, 0.8, 4)' } },
    // Process view: an edge bent around the nodes its straight line would cross.
    { selector: 'edge.detour', style: {
      'curve-style': 'unbundled-bezier', 'control-point-distances': 'data(bend)', 'control-point-weights': 0.5,
      'edge-distances': 'node-position' } },
    // Flows with TCP counters are as wide as the bytes they moved (log scale), as in DOT.
    { selector: 'edge[bw]', style: { 'width': 'data(bw)' } },
    { selector: 'node.group-node', style: {
      'shape': 'ellipse', 'width': 'data(size)', 'height': 'data(size)', 'background-color': '#34568f', 'border-width': 2, 'border-color': '#1f3558',
      'font-size': RING_FONT, 'min-zoomed-font-size': 6, 'text-wrap': 'none', 'text-valign': 'center', 'text-halign': 'center', 'font-weight': 'bold',
      'text-margin-x': 'data(mx)', 'text-margin-y': 'data(my)', 'text-rotation': 'data(rot)' } },
    { selector: 'edge.ring-loop', style: {
      'loop-direction': 'data(loopDir)', 'loop-sweep': '-40deg', 'control-point-step-size': 18, 'label': '', 'arrow-scale': 0.7 } },
    { selector: 'edge.ring-edge.labelled, edge.ring-loop.labelled, edge.ring-edge.highlight, edge.ring-edge.match, edge.ring-loop.highlight', style: {
      'label': 'data(label)', 'text-rotation': 'autorotate', 'text-background-color': '#ffffff', 'text-background-opacity': 0.85, 'text-background-padding': 1 } },
    { selector: 'edge.ingress-mark', style: {
      'line-color': '#e07b00', 'line-style': 'dotted', 'target-arrow-shape': 'none', 'label': '', 'width': 1, 'curve-style': 'straight' } },
    { selector: '.faded', style: { 'opacity': 0.13 } },
    { selector: 'node.machine.faded', style: { 'opacity': 0.35 } },
    { selector: 'node.highlight', style: { 'border-width': 3, 'border-color': '#ff7a00', 'z-index': 20 } },
    { selector: 'edge.highlight', style: { 'line-color': '#ff6a00', 'target-arrow-color': '#ff6a00', 'width': 3, 'z-index': 20, 'min-zoomed-font-size': 4 } },
    { selector: '.match', style: { 'border-width': 4, 'border-color': '#d81b60', 'line-color': '#d81b60', 'target-arrow-color': '#d81b60', 'z-index': 30 } },
    { selector: '.focus', style: { 'border-width': 4, 'border-color': '#d32f2f', 'line-color': '#d32f2f', 'target-arrow-color': '#d32f2f', 'z-index': 40 } },
    { selector: '.hidden, .out-of-focus', style: { 'display': 'none' } },
    // A focused neighbourhood of the host view is laid out anew: straight labels, plain curves.
    { selector: 'node.machine-node.refocused', style: { 'text-rotation': 'none', 'text-margin-x': 0, 'text-margin-y': 3, 'text-valign': 'bottom' } },
    { selector: 'edge.refocused', style: { 'curve-style': 'bezier' } },
  ];

  // ---- the view's state, also kept in the URL fragment so that a link reopens the same view ----

  // #view=host&q=postgres&focus=n12&hops=2&open=web1,db1&external=0&ingress=0&short=0
  function readFragment() {
    var params = new URLSearchParams(window.location.hash.replace(/^#/, ''));
    var hops = parseInt(params.get('hops') || '1', 10);
    return {
      view: params.get('view'), q: params.get('q') || '', focus: params.get('focus'),
      hops: hops >= 1 && hops <= 5 ? hops : 1,
      open: (params.get('open') || '').split(',').filter(function (name) { return machines.has(name); }),
      groups: (params.get('groups') || '').split(',').map(Number).filter(function (g) { return g >= 0 && g < groups.length && params.get('groups'); }),
      external: params.get('external') !== '0', ingress: params.get('ingress') !== '0', short: params.get('short') !== '0',
      links: params.get('links') === 'all',
    };
  }
  function writeFragment() {
    var params = new URLSearchParams();
    params.set('view', state.groupBy);
    if (state.query) params.set('q', state.query);
    if (state.focus) { params.set('focus', state.focus); params.set('hops', String(state.hops)); }
    if (expanded.size) params.set('open', Array.from(expanded).join(','));
    if (openGroups.size) params.set('groups', Array.from(openGroups).join(','));
    if (!state.showExternal) params.set('external', '0');
    if (!state.showIngress) params.set('ingress', '0');
    if (!state.showShortLived) params.set('short', '0');
    if (state.showAllLinks) params.set('links', 'all');
    try { window.history.replaceState(null, '', '#' + params.toString()); } catch (error) { /* a sandboxed frame */ }
  }
  var fragment = readFragment();
  // (A large map opens them once its body is inflated, after the first view.)
  if (!COMPACT) fragment.open.forEach(function (name) { expanded.add(name); });

  // Would the process view, fitted to the screen, draw its process labels? Cytoscape skips a
  // label drawn under 'min-zoomed-font-size' (7 px; process labels are 10 px at zoom 1): past
  // that size the first view is the host view, which stays readable to a few hundred hosts.
  var PROCESS_FONT = 10, MIN_FONT = 7;
  function processViewReadable() {
    var left = Infinity, top = Infinity, right = -Infinity, bottom = -Infinity;
    Object.keys(layout.machines).forEach(function (name) {
      var box = layout.machines[name];
      left = Math.min(left, box[0] - box[2] / 2); right = Math.max(right, box[0] + box[2] / 2);
      top = Math.min(top, box[1] - box[3] / 2 - 30); bottom = Math.max(bottom, box[1] + box[3] / 2);
    });
    var area = document.getElementById('graph');
    return viewOf(left, top, right, bottom, area.clientWidth, area.clientHeight).zoom * PROCESS_FONT >= MIN_FONT;
  }
  function initialMode() {
    if (!hasProcessLevel || COMPACT) return 'host';
    if (fragment.view === 'process' || fragment.view === 'host') return fragment.view;
    return processViewReadable() ? 'process' : 'host';
  }

  var state = {
    groupBy: initialMode(), showExternal: fragment.external, showIngress: fragment.ingress, showShortLived: fragment.short,
    query: '', focus: null, hops: fragment.hops, showAllLinks: fragment.links,
  };
  var views = {}; // groupBy -> removed Cytoscape collection, kept to restore quickly
  function buildView(mode) { return mode === 'host' && hasProcessLevel ? hostViewElements() : processViewElements(); }

  var initialElements = buildView(state.groupBy);
  timings.elements = performance.now();

  // Fit the map from the positions we already have: Cytoscape's own fit measures every element
  // and its label first, which at thousands of elements costs a noticeable part of start-up.
  function fitView(elements, width, height) {
    var left = Infinity, top = Infinity, right = -Infinity, bottom = -Infinity;
    elements.forEach(function (element) {
      if (!element.position) return;
      var x = element.position.x, y = element.position.y;
      var halfW = (element.data.w || 60) / 2 + 10, halfH = (element.data.h || 30) / 2 + 30;
      if (element.data.reach !== undefined) {
        // A radial label: its centre is at the margins, its extent at most half its width around.
        var r = element.data.reach;
        left = Math.min(left, x - 15, x + element.data.mx - r); right = Math.max(right, x + 15, x + element.data.mx + r);
        top = Math.min(top, y - 15, y + element.data.my - r); bottom = Math.max(bottom, y + 15, y + element.data.my + r);
        return;
      }
      left = Math.min(left, x - halfW); right = Math.max(right, x + halfW);
      top = Math.min(top, y - halfH); bottom = Math.max(bottom, y + halfH);
    });
    return viewOf(left, top, right, bottom, width, height);
  }
  function viewOf(left, top, right, bottom, width, height) {
    if (!isFinite(left)) return { zoom: 1, pan: { x: width / 2, y: height / 2 } };
    var padding = 20;
    var zoom = Math.min((width - 2 * padding) / Math.max(1, right - left), (height - 2 * padding) / Math.max(1, bottom - top));
    zoom = Math.max(0.01, Math.min(2, zoom));
    return { zoom: zoom, pan: { x: width / 2 - zoom * (left + right) / 2, y: height / 2 - zoom * (top + bottom) / 2 } };
  }
  // The same for the nodes now drawn (after a group-by switch, or the Fit button).
  function fitAll() {
    var nodes = cy.nodes().filter(function (node) { return !node.hasClass('hidden'); });
    var elements = nodes.map(function (node) {
      var data = node.data();
      // A node laid out anew (focus) has its label below it, not where its margins say.
      if (node.hasClass('refocused')) data = { size: data.size };
      return { position: node.position(), data: data };
    });
    var view = fitView(elements, cy.width(), cy.height());
    cy.viewport({ zoom: view.zoom, pan: view.pan });
  }
  var graphBox = document.getElementById('graph');
  var startView = fitView(initialElements, graphBox.clientWidth, graphBox.clientHeight);
  // Nodes first, edges after: Cytoscape re-dirties each element's connected edges for every style
  // property it applies, so styling nodes before any edge exists keeps start-up linear.
  var cy = cytoscape({
    container: document.getElementById('graph'),
    elements: initialElements.filter(function (element) { return element.group === 'nodes'; }),
    style: style,
    layout: { name: 'preset', fit: false },
    zoom: startView.zoom,
    pan: startView.pan,
    minZoom: 0.01,
    maxZoom: 5,
    boxSelectionEnabled: false,
    selectionType: 'single',
    motionBlur: false,
    textureOnViewport: BIG,
    hideEdgesOnViewport: BIG,
    pixelRatio: BIG ? 1 : 'auto',
  });
  cy.batch(function () { cy.add(initialElements.filter(function (element) { return element.group === 'edges'; })); });

  // ---- the details panel (textContent only) ------------------------------------------

  var detailsTitle = document.getElementById('details-title');
  var detailsBody = document.getElementById('details-body');
  function el(tag, text, className) {
    var element = document.createElement(tag);
    if (text !== undefined && text !== null) element.textContent = String(text);
    if (className) element.className = className;
    return element;
  }
  function showDetails(title, rows, lists) {
    detailsTitle.textContent = title;
    detailsBody.replaceChildren();
    var dl = el('dl');
    rows.forEach(function (row) {
      var value = row[1];
      if (value === undefined || value === null || value === '' || (Array.isArray(value) && !value.length)) return;
      dl.appendChild(el('dt', row[0]));
      dl.appendChild(el('dd', Array.isArray(value) ? value.join(', ') : value));
    });
    detailsBody.appendChild(dl);
    (lists || []).forEach(function (section) {
      if (!section.items.length) return;
      detailsBody.appendChild(el('h3', section.title + ' (' + section.items.length + ')'));
      var ul = el('ul');
      section.items.slice(0, MAX_LIST).forEach(function (item) { ul.appendChild(el('li', item)); });
      if (section.items.length > MAX_LIST) ul.appendChild(el('li', '\u2026 ' + (section.items.length - MAX_LIST) + ' more', 'more'));
      detailsBody.appendChild(ul);
    });
  }
  function clearDetails() {
    detailsTitle.textContent = 'Details';
    detailsBody.replaceChildren(el('p', 'Click a host, a process or a flow.', 'hint'));
  }
  function describeFlow(flow, from) {
    var client = nodeById.get(String(flow.client)), server = nodeById.get(String(flow.server));
    var peer = from === 'client' ? server : client;
    var arrow = flow.directed === false ? ' \u2014 ' : (from === 'client' ? ' \u2192 ' : ' \u2190 ');
    var text = arrow + nodeName(peer) + '@' + (peer ? peer.host : '?') + '  ' + flowLabel(flow.proto, flow.server_port, flow.count || 1, flow.via ? [String(flow.via)] : null);
    if (flow.inferred) text += ' (inferred)';
    if (flow.traffic) text += '  ' + humanBytes(flowBytes(flow)) + (rttText(flow.traffic) ? ', rtt ' + Number(flow.traffic.rtt_median_ms).toPrecision(3) * 1 + ' ms' : '');
    return text.trim();
  }
  function hostRows(machine) {
    var host = machine.host || {};
    var outside = host.outside || {};
    return [
      ['hostname', host.hostname], ['machine id', host.machine_id], ['addresses', list(host.addresses)],
      ['captured', typeof host.captured_at === 'number' ? new Date(host.captured_at * 1000).toISOString() : null],
      ['stale', host.stale ? 'yes' : null], ['complete', host.complete === false ? 'no (partial capture)' : (host.complete ? 'yes' : null)],
      ['format', host.legacy ? 'original capture.py' : null],
      ['outside in', outside.inbound], ['outside out', outside.outbound], ['unresolved', host.unresolved],
      ['processes', machine.nodes.filter(function (n) { return n.kind === 'process'; }).length],
    ];
  }
  function showNodeDetails(node) {
    var machine = machines.get(String(node.host));
    if (machine) loadFlowsOf(machine);
    var flows = flowsOf.get(String(node.id)) || { out: [], in: [] };
    var rows = [
      ['host', node.host], ['kind', node.kind], ['comm', node.kind === 'process' ? node.comm : null],
      ['pids', list(node.pids)], ['users', list(node.users)], ['context', list(node.contexts)],
      [node.command_inferred ? 'command (inferred from exec events)' : 'cmdline', node.cmdline],
      ['short-lived', node.short_lived ? 'connections of the window that no process was seen holding' : null],
      ['listening', list(node.listening).map(function (l) { return l.proto + ' ' + endpoint(l.address, l.port); })],
      ['ingress', list(node.ingress).map(describeIngress)],
      ['sockets', node.sockets], ['addresses', machine && machine.host ? list(machine.host.addresses) : []],
    ];
    showDetails(nodeName(node) + ' @ ' + node.host, rows, [
      { title: 'Flows out', items: flows.out.map(function (f) { return describeFlow(f, 'client'); }) },
      { title: 'Flows in', items: flows.in.map(function (f) { return describeFlow(f, 'server'); }) },
    ]);
  }
  function showMachineDetails(machine) {
    var items = machine.nodes.map(function (node) {
      return nodeName(node) + ' ' + list(node.pids).join(',') + (list(node.listening).length ? ' listening ' + list(node.listening).map(function (l) { return l.port; }).join(',') : '');
    });
    var unresolved = list(machine.host && machine.host.unresolved_examples).map(function (u) {
      return u.proto + ' ' + u.local + ':' + u.local_port + ' \u2192 ' + u.remote + ':' + u.remote_port +
        (u.pid !== null && u.pid !== undefined ? ' pid ' + u.pid : '') + ': ' + u.why;
    });
    showDetails(machine.name, hostRows(machine), [
      { title: 'Processes', items: items },
      { title: 'Unresolved (examples)', items: unresolved },
    ]);
  }
  function showFlowDetails(flows, title) {
    if (flows.length === 1) {
      var flow = flows[0];
      var client = nodeById.get(String(flow.client)), server = nodeById.get(String(flow.server));
      showDetails(title, [
        ['client', nodeName(client) + ' @ ' + (client && client.host)], ['server', nodeName(server) + ' @ ' + (server && server.host)],
        ['transport', flow.proto], ['server port', flow.server_port], ['server address', flow.server_address],
        ['client pids', list(flow.client_pids)], ['server pids', list(flow.server_pids)],
        ['connections', flow.count], ['directed', flow.directed === false ? 'no (neither end listens)' : 'yes'],
        ['inferred', flow.inferred ? 'yes (peer socket not captured)' : null], ['NAT via', flow.via],
        ['seen in the window', flow.connections === undefined ? null : flow.connections + ' connections, ' + (isShortLived(flow) ? rateText(flow) : 'persistent')],
        ['bytes', trafficText(flow.traffic)], ['RTT', rttText(flow.traffic)],
        ['moved in the window', flow.window_bytes_sent === undefined ? null : humanBytes(flow.window_bytes_sent) + ' sent / '
          + humanBytes(flow.window_bytes_received) + ' received' + (flow.bytes_per_second ? ', ' + humanBytes(Math.round(flow.bytes_per_second)) + '/s' : '')],
        ['retransmits', flow.traffic ? flow.traffic.retransmits : null],
        ['counters from', flow.traffic ? flow.traffic.connections + ' of ' + (flow.count || 1) + ' connections' : null],
        ['first seen', flow.first_seen === undefined ? null : new Date(flow.first_seen * 1000).toISOString()],
        ['last seen', flow.last_seen === undefined ? null : new Date(flow.last_seen * 1000).toISOString()],
      ]);
      return;
    }
    var bytes = flows.reduce(function (sum, f) { return sum + flowBytes(f); }, 0);
    showDetails(title, [['flows', flows.length], ['bytes', bytes > 0 ? humanBytes(bytes) + ' (both ways, flows with counters)' : null]],
      [{ title: 'Flows', items: flows.map(function (f) { return describeFlow(f, 'client') + '  from ' + nodeName(nodeById.get(String(f.client))) + '@' + nodeById.get(String(f.client)).host; }) }]);
  }

  // ---- focus: highlight a selection or the search matches, fade the rest ---------------

  // Fading means restyling every element; at scale that costs a second per click, so big maps
  // only mark what is in focus (drawn on top, in colour) and leave the rest as it is.
  var marked = null, faded = null;
  function focusOn(keep, className) {
    cy.batch(function () {
      if (marked) marked.removeClass('highlight focus match');
      if (faded) faded.removeClass('faded');
      marked = keep || null;
      faded = null;
      if (keep) {
        if (!BIG) { faded = cy.elements().difference(keep); faded.addClass('faded'); }
        keep.addClass(className);
      }
    });
  }
  // The machine boxes (process view) of the given nodes.
  function boxesOf(nodes) {
    var names = new Set();
    nodes.forEach(function (node) { if (node.isNode() && node.data('machine') !== undefined) names.add(node.data('machine')); });
    if (!hasProcessLevel) return cy.collection();
    // In the host view only expanded hosts have a box; elementsById skips the others.
    return elementsById(Array.from(names, function (name) { return machineId(machines.get(name)); }));
  }
  // One collection from many ids at once (a union per id would cost quadratic time).
  function elementsById(ids) {
    var found = [];
    ids.forEach(function (id) { var element = cy.getElementById(id); if (element.length) found.push(element[0]); });
    return cy.collection(found);
  }
  // Bring the undrawn links wanted (by the focus or the search) into Cytoscape, and take out those
  // no longer wanted. Each is added as a copy: Cytoscape keeps the data object it is given.
  function syncShownLinks() {
    var wanted = new Set(linksWanted.focus);
    linksWanted.search.forEach(function (id) { wanted.add(id); });
    var gone = Array.from(linksShown).filter(function (id) { return !wanted.has(id); });
    var added = Array.from(wanted).filter(function (id) { return !linksShown.has(id) && undrawnLinks.has(id); });
    if (!gone.length && !added.length) return;
    cy.batch(function () {
      elementsById(gone).remove();
      gone.forEach(function (id) { linksShown.delete(id); });
      cy.add(added.map(function (id) {
        var link = undrawnLinks.get(id);
        return { group: 'edges', data: Object.assign({}, link.data), classes: link.classes };
      }));
      added.forEach(function (id) { linksShown.add(id); });
    });
  }
  // The undrawn links within `hops` of the given hosts, and those between the hosts so reached.
  function undrawnLinksAround(startIds, hops) {
    var reached = new Set(startIds), frontier = startIds, found = new Set();
    function otherEnd(id, end) { var data = undrawnLinks.get(id).data; return data.source === end ? data.target : data.source; }
    for (var hop = 1; hop <= hops; hop++) {
      var next = [];
      frontier.forEach(function (end) {
        var node = cy.getElementById(end);
        node.neighborhood().nodes().forEach(function (other) {
          if (!reached.has(other.id())) { reached.add(other.id()); next.push(other.id()); }
        });
        (undrawnByEnd.get(end) || []).forEach(function (id) {
          var other = otherEnd(id, end);
          if (!reached.has(other)) { reached.add(other); next.push(other); }
        });
      });
      frontier = next;
    }
    reached.forEach(function (end) {
      (undrawnByEnd.get(end) || []).forEach(function (id) { if (reached.has(otherEnd(id, end))) found.add(id); });
    });
    return found;
  }
  function membersOf(machine) {
    return cy.collection(machine.nodes.map(function (node) { return cy.getElementById(String(node.id)); }));
  }
  function withEnds(edges) {
    var keep = edges.union(edges.connectedNodes());
    return keep.union(boxesOf(keep));
  }
  function viaMachines(flowIds) {
    var ids = [];
    flowIds.forEach(function (id) {
      var flow = flowById.get(id);
      var machine = flow && flow.via ? machines.get(String(flow.via)) : null;
      if (machine) ids.push(machineId(machine), machineNodeId(machine));
    });
    return elementsById(ids);
  }
  function selectElement(target) {
    var keep;
    if (target.isEdge()) {
      var flows = aggregatedFlows(target);
      if (!flows.length) return;
      keep = withEnds(target).union(viaMachines(flows.map(function (f) { return String(f.id); })));
      showFlowDetails(flows, target.data('label'));
    } else if (target.hasClass('ingress-mark')) {
      return selectElement(cy.getElementById(target.data('of')));
    } else if (target.hasClass('group-node')) {
      // A click on a group of the overview opens it into its hosts.
      return openGroup(target.data('groupIndex'));
    } else if (target.hasClass('machine-node') && hasProcessLevel && !expanded.has(target.data('machine'))) {
      // A click on a host of the host view opens it into its processes.
      return expand(target.data('machine'));
    } else if (target.hasClass('machine') || target.hasClass('machine-node')) {
      var machine = machines.get(target.data('machine'));
      var inside = target.hasClass('machine') ? target.union(membersOf(machine)) : target;
      keep = inside.union(withEnds(inside.connectedEdges()));
      showMachineDetails(machine);
    } else {
      keep = target.union(withEnds(target.connectedEdges()));
      keep = keep.union(viaMachines(target.connectedEdges().map(function (e) { return e.data('flow'); }).filter(Boolean)));
      var node = nodeById.get(target.id());
      if (node.kind === 'host' && machines.has(String(node.host))) showMachineDetails(machines.get(String(node.host)));
      else showNodeDetails(node);
    }
    focusOn(keep, 'highlight');
    target.addClass('focus');
    window.netviz.selected = target.id();
    focusButton.disabled = false;
  }
  function clearSelection() {
    window.netviz.selected = null;
    focusButton.disabled = true;
    clearDetails();
    runSearch(state.query);
  }

  // ---- expand a host of the host view into its processes, and back ----------------------

  // Only what changes is removed and added: at a few thousand edges, restyling all of them
  // would cost seconds for a host that touches a few dozen.
  function rebuildHostView() {
    focusOn(null);
    var elements = hostViewElements();
    var wanted = new Set(elements.map(function (element) { return element.data.id; }));
    var gone = cy.elements().filter(function (element) { return !wanted.has(element.id()); });
    var fresh = elements.filter(function (element) { return cy.getElementById(element.data.id).empty(); });
    cy.batch(function () { gone.edges().remove(); gone.nodes().remove(); });
    cy.batch(function () { cy.add(fresh.filter(function (element) { return element.group === 'nodes'; })); });
    cy.batch(function () { cy.add(fresh.filter(function (element) { return element.group === 'edges'; })); });
    updateLinksControl();
    applyFilters();
  }
  function expand(name) {
    if (!machines.has(name) || !hasProcessLevel) return;
    expanded.add(name);
    if (state.groupBy !== 'host') return writeFragment();
    clearFocus();
    rebuildHostView();
    var box = cy.getElementById(machineId(machines.get(name)));
    // A large map's overview is far out: zoom to the opened host.
    if (COMPACT && box.length) cy.fit(box, 80);
    selectElement(box);
    updateCollapse();
    writeFragment();
  }
  function openGroup(g) {
    if (!groups[g]) return;
    openGroups.add(g);
    if (state.groupBy !== 'host') return;
    clearFocus();
    rebuildHostView();
    var members = elementsById(groups[g].hosts.map(function (index) { return endOfHost(machineList[index]); }));
    if (members.length) cy.fit(members, 60);
    showGroupDetails(g);
    updateCollapse();
    writeFragment();
  }
  function showGroupDetails(g) {
    var group = groups[g];
    var members = group.hosts.map(function (index) { return machineList[index]; });
    showDetails(String(group.name), [
      ['hosts', members.length], ['processes', members.reduce(function (sum, m) { return sum + processCount(m); }, 0)],
      ['group', group.auto ? 'hosts next to each other on the ring (the document names no groups)' : null],
    ], [{ title: 'Hosts', items: members.map(function (m) { return m.name; }) }]);
  }
  function collapseAll() {
    expanded.clear();
    openGroups.clear();
    if (state.groupBy === 'host') { clearFocus(); rebuildHostView(); clearSelection(); }
    updateCollapse();
    writeFragment();
  }
  var collapseButton = document.getElementById('collapse');
  function updateCollapse() { collapseButton.hidden = !(state.groupBy === 'host' && (expanded.size || openGroups.size)); }
  collapseButton.addEventListener('click', collapseAll);

  // ---- focus: a node's neighbourhood of N hops, the rest hidden --------------------------

  var focusButton = document.getElementById('focus');
  var hopsBox = document.getElementById('hops');
  var savedPositions = null;
  function neighbourhood(target, hops) {
    var start = target.isEdge() ? target.union(target.connectedNodes()) : target;
    if (target.hasClass('machine')) start = start.union(membersOf(machines.get(target.data('machine'))).filter(function (n) { return n.length; }));
    var levels = new Map();
    start.nodes().forEach(function (node) { levels.set(node.id(), 0); });
    var keep = start, frontier = start.nodes();
    for (var hop = 1; hop <= hops; hop++) {
      var next = frontier.neighborhood().nodes().filter(function (node) { return !levels.has(node.id()); });
      next.forEach(function (node) { levels.set(node.id(), hop); });
      keep = keep.union(next);
      frontier = next;
    }
    keep = keep.union(keep.nodes().edgesWith(keep.nodes())).union(start.edges());
    return { keep: keep.union(boxesOf(keep)), levels: levels };
  }
  function applyFocus(id, hops) {
    clearFocus();
    var target = cy.getElementById(id);
    if (!target.length) return false;
    state.focus = id;
    state.hops = hops;
    hopsBox.value = String(hops);
    if (undrawnLinks.size) {
      var ends = target.isEdge() ? target.connectedNodes() : target;
      linksWanted.focus = undrawnLinksAround(ends.map(function (node) { return node.id(); }), hops);
      syncShownLinks();
      target = cy.getElementById(id);
    }
    var found = neighbourhood(target, hops);
    cy.batch(function () { cy.elements().difference(found.keep).addClass('out-of-focus'); });
    if (state.groupBy === 'host') {
      // The kept hosts are scattered round the ring: lay them out in rings by hop instead.
      var nodes = found.keep.nodes();
      savedPositions = new Map();
      nodes.forEach(function (node) { savedPositions.set(node.id(), Object.assign({}, node.position())); });
      cy.batch(function () { found.keep.addClass('refocused'); });
      nodes.layout({
        name: 'concentric', animate: false, fit: false, minNodeSpacing: 40, avoidOverlap: true,
        concentric: function (node) { return hops + 1 - (found.levels.has(node.id()) ? found.levels.get(node.id()) : hops); },
        levelWidth: function () { return 1; },
      }).run();
    }
    fitAll();
    document.getElementById('unfocus').hidden = false;
    window.netviz.focused = id;
    writeFragment();
    return true;
  }
  function clearFocus() {
    if (!state.focus) return;
    state.focus = null;
    linksWanted.focus = new Set();
    syncShownLinks();
    cy.batch(function () {
      cy.elements('.out-of-focus').removeClass('out-of-focus');
      if (savedPositions) {
        savedPositions.forEach(function (at, id) { var node = cy.getElementById(id); if (node.length) node.position(at); });
        cy.elements('.refocused').removeClass('refocused');
      }
    });
    savedPositions = null;
    document.getElementById('unfocus').hidden = true;
    window.netviz.focused = null;
    fitAll();
    writeFragment();
  }
  focusButton.addEventListener('click', function () {
    if (window.netviz.selected) applyFocus(window.netviz.selected, Number(hopsBox.value) || 1);
  });
  hopsBox.addEventListener('change', function () {
    state.hops = Number(hopsBox.value) || 1;
    if (state.focus) applyFocus(state.focus, state.hops);
  });
  document.getElementById('unfocus').addEventListener('click', clearFocus);
  cy.on('dbltap', 'node', function (event) { applyFocus(event.target.id(), Number(hopsBox.value) || 1); });
  function aggregatedFlows(edge) {
    if (pendingEdges.has(edge.id())) {
      // A large map's summed edge: decode the flows of its client hosts and keep those it sums.
      var flows = aggregated.get(edge.id()).slice();
      var pending = [];
      pendingEdges.get(edge.id()).forEach(function (summed) {
        if (!summed.group) { pending.push(summed); return; }
        // Two closed groups: the host edges between them, from the first group's line.
        var row = summed.group;
        groupEdgesOf(row[0]).forEach(function (hostEdge) {
          var ga = groupOf.get(hostEdge[0]), gb = groupOf.get(hostEdge[1]);
          var ends = (ga === row[0] && gb === row[1]) || (row[3] !== 1 && ga === row[1] && gb === row[0]);
          if (ends && (hostEdge[2] >= 0 ? 1 : 0) === row[2] && hostEdge[3] === row[3]) pending.push(hostEdge);
        });
      });
      pending.forEach(function (summed) {
        decodeLine(summed[0]);
        if (summed[3] !== 1) decodeLine(summed[1]);
        var a = machineList[summed[0]].name, b = machineList[summed[1]].name, via = summed[2] < 0 ? null : str(summed[2]);
        [summed[0], summed[1]].forEach(function (index, k) {
          if (k === 1 && (summed[3] === 1 || summed[0] === summed[1])) return;
          machineList[index].nodes.forEach(function (node) {
            ((flowsOf.get(String(node.id)) || {}).out || []).forEach(function (flow) {
              var server = nodeById.get(String(flow.server));
              if (node.kind === 'outside' || !server || server.kind === 'outside') return;
              var ends = [String(node.host), String(server.host)];
              var directed = flow.directed !== false;
              if (directed !== (summed[3] === 1) || (flow.via ? String(flow.via) : null) !== via) return;
              if (directed ? ends[0] === a && ends[1] === b : (ends[0] === a && ends[1] === b) || (ends[0] === b && ends[1] === a)) flows.push(flow);
            });
          });
        });
      });
      pendingEdges.delete(edge.id());
      aggregated.set(edge.id(), flows);
      return flows;
    }
    if (aggregated.has(edge.id())) return aggregated.get(edge.id());
    var flow = flowById.get(edge.id());
    return flow ? [flow] : [];
  }

  cy.on('tap', function (event) {
    if (event.target === cy) {
      clearSelection();
    } else {
      selectElement(event.target);
    }
  });

  // ---- search by machine, process, address or port -------------------------------------

  var machineText = new Map(), nodeText = new Map(), nodeNumbers = new Map();
  // Built at the first search: a large map's first view does not wait for it.
  function buildSearchIndex() {
  if (machineText.size || !machineList.length) return;
  machineList.forEach(function (machine) {
    var host = machine.host || {};
    machineText.set(machine.name, [machine.name, host.hostname || ''].concat(list(host.addresses)).join('\n').toLowerCase());
  });
  docNodes.forEach(function (node) {
    var id = String(node.id);
    var listening = list(node.listening);
    nodeText.set(id, [nodeName(node), node.cmdline || ''].concat(list(node.users), list(node.contexts),
      listening.map(function (l) { return String(l.address); })).join('\n').toLowerCase());
    nodeNumbers.set(id, list(node.pids).concat(listening.map(function (l) { return l.port; })).map(Number));
  });
  }
  function searchModel(query) {
    var q = query.trim().toLowerCase();
    var result = { machines: [], nodes: [], flows: [] };
    if (!q) return result;
    buildSearchIndex();
    var numeric = /^\d+$/.test(q) ? Number(q) : null;
    machineList.forEach(function (machine) {
      if (numeric === null && machineText.get(machine.name).indexOf(q) >= 0) result.machines.push(machine.name);
    });
    docNodes.forEach(function (node) {
      var id = String(node.id);
      var hit = numeric === null ? nodeText.get(id).indexOf(q) >= 0 : nodeNumbers.get(id).indexOf(numeric) >= 0;
      if (hit) result.nodes.push(id);
    });
    usableFlows.forEach(function (flow) {
      var hit = numeric === null
        ? String(flow.server_address || '').toLowerCase().indexOf(q) >= 0
        : flow.server_port === numeric;
      if (hit) result.flows.push(String(flow.id));
    });
    return result;
  }
  var searchCount = document.getElementById('search-count');
  function runSearch(query) {
    var found = matchSearch(query);
    writeFragment();
    return found;
  }
  function matchSearch(query) {
    state.query = query;
    var result = searchModel(query);
    window.netviz.lastSearch = { query: query, machines: result.machines, nodes: result.nodes, flows: result.flows };
    if (!query.trim()) {
      searchCount.textContent = '';
      focusOn(null);
      linksWanted.search = new Set();
      syncShownLinks();
      return cy.collection();
    }
    var ids = [];
    var machineHit = new Set(result.machines);
    var nodeHit = new Set(result.nodes);
    var flowHit = new Set(result.flows);
    if (state.groupBy === 'process' || !hasProcessLevel) {
      result.machines.forEach(function (name) {
        var machine = machines.get(name);
        if (hasProcessLevel) ids.push(machineId(machine));
        else machine.nodes.forEach(function (node) { ids.push(String(node.id)); });
      });
      ids = ids.concat(result.nodes, result.flows);
    } else {
      machineList.forEach(function (machine) {
        if (expanded.has(machine.name)) {
          // An expanded host shows its own matching processes.
          if (machineHit.has(machine.name)) ids.push(machineId(machine));
          machine.nodes.forEach(function (n) { if (nodeHit.has(String(n.id))) ids.push(String(n.id)); });
          return;
        }
        var hit = machineHit.has(machine.name) || machine.nodes.some(function (n) { return n.kind !== 'outside' && nodeHit.has(String(n.id)); });
        if (hit) ids.push(endOfHost(machine)); // the host, or its group while the group is closed
      });
      aggregated.forEach(function (flows, id) {
        if (flows.some(function (f) { return flowHit.has(String(f.id)); })) ids.push(id);
      });
    }
    linksWanted.search = new Set(ids.filter(function (id) { return undrawnLinks.has(id); }));
    syncShownLinks();
    var matched = elementsById(Array.from(new Set(ids)));
    matched = matched.filter(function (element) { return !element.hasClass('hidden'); });
    var parts = [];
    if (result.machines.length) parts.push(result.machines.length + (result.machines.length === 1 ? ' host' : ' hosts'));
    if (result.nodes.length) parts.push(result.nodes.length + (result.nodes.length === 1 ? ' process' : ' processes'));
    if (result.flows.length) parts.push(result.flows.length + (result.flows.length === 1 ? ' flow' : ' flows'));
    searchCount.textContent = parts.length ? parts.join(', ') : 'no match';
    var ends = matched.union(matched.edges().connectedNodes());
    focusOn(ends.union(boxesOf(ends)), 'match');
    // Only the matches themselves keep the strong mark; their ends and boxes are just not faded.
    cy.batch(function () { marked.difference(matched).removeClass('match'); });
    return matched;
  }
  var searchBox = document.getElementById('search');
  var searchTimer = null;
  searchBox.addEventListener('input', function () {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(function () { runSearch(searchBox.value); }, BIG ? 200 : 60);
  });
  searchBox.addEventListener('keydown', function (event) {
    if (event.key !== 'Enter') return;
    clearTimeout(searchTimer);
    var matched = runSearch(searchBox.value) || cy.collection();
    if (matched.length) cy.fit(matched.union(boxesOf(matched)), 60);
  });

  // ---- group-by and filters ------------------------------------------------------------

  function applyFilters() {
    cy.batch(function () {
      var outside = cy.nodes('.outside');
      if (state.showExternal) outside.removeClass('hidden'); else outside.addClass('hidden');
      var boxes = cy.nodes('.machine, .machine-node');
      if (state.showExternal) boxes.addClass('with-outside'); else boxes.removeClass('with-outside');
      var marks = cy.elements('.ingress-mark');
      if (state.showIngress) marks.removeClass('hidden'); else marks.addClass('hidden');
      var ingressMachines = cy.nodes('.has-ingress');
      if (state.showIngress) ingressMachines.addClass('show-ingress'); else ingressMachines.removeClass('show-ingress');
      // persistent only / everything seen (a window's short-lived flows and their machine-level ends)
      var shortLived = cy.elements('.short-lived');
      if (state.showShortLived) shortLived.removeClass('hidden'); else shortLived.addClass('hidden');
    });
  }
  var groupButtons = { process: document.getElementById('group-process'), host: document.getElementById('group-host') };
  function setGroupBy(mode) {
    if (mode === 'machine') mode = 'host'; // the older name of the host view
    if (mode === state.groupBy || (mode === 'process' && (!hasProcessLevel || COMPACT))) return;
    clearFocus();
    focusOn(null);
    // Edges out first and in last, for the same reason as at start-up (see the cytoscape() call).
    var current = cy.elements();
    cy.batch(function () { current.edges().remove(); current.nodes().remove(); });
    // The host view changes with what is expanded: it is built anew each time.
    if (state.groupBy === 'process') views.process = current;
    var next = mode === 'process' ? views.process : null;
    if (next) {
      cy.batch(function () { next.nodes().restore(); });
      cy.batch(function () { next.edges().restore(); });
    } else {
      var elements = buildView(mode);
      cy.batch(function () { cy.add(elements.filter(function (element) { return element.group === 'nodes'; })); });
      cy.batch(function () { cy.add(elements.filter(function (element) { return element.group === 'edges'; })); });
    }
    state.groupBy = mode;
    window.netviz.groupBy = mode;
    updateButtons();
    applyFilters();
    clearSelection();
    updateCollapse();
    updateLinksControl();
    fitAll();
    writeFragment();
  }
  function updateButtons() {
    Object.keys(groupButtons).forEach(function (mode) {
      groupButtons[mode].setAttribute('aria-pressed', String(state.groupBy === mode));
    });
    groupButtons.process.disabled = !hasProcessLevel || COMPACT;
    if (COMPACT) groupButtons.process.title = 'Too many processes to draw at once: open hosts (or groups) instead';
  }
  groupButtons.process.addEventListener('click', function () { setGroupBy('process'); });
  groupButtons.host.addEventListener('click', function () { setGroupBy('host'); });
  document.getElementById('show-external').addEventListener('change', function (event) {
    state.showExternal = event.target.checked;
    applyFilters();
    runSearch(state.query);
  });
  document.getElementById('show-ingress').addEventListener('change', function (event) {
    state.showIngress = event.target.checked;
    applyFilters();
    writeFragment();
  });
  document.getElementById('window-filter').hidden = !hasWindow;
  document.getElementById('show-short-lived').addEventListener('change', function (event) {
    state.showShortLived = event.target.checked;
    applyFilters();
    runSearch(state.query);
  });
  var linksControl = document.getElementById('links-filter'), linksBox = document.getElementById('show-all-links');
  function updateLinksControl() {
    linksControl.hidden = !(state.groupBy === 'host' && ringLinks.total > RING_LINKS_DRAWN);
    linksControl.lastChild.textContent = ' all ' + ringLinks.total.toLocaleString('en') + ' links';
    linksControl.title = state.showAllLinks ? 'Every link between hosts is drawn' :
      'Drawn: the ' + ringLinks.drawn.toLocaleString('en') + ' busiest links between hosts (each host keeps its busiest); ' +
      'a focused host shows all of its own, a search those whose flows it matches';
    linksBox.checked = state.showAllLinks;
  }
  linksBox.addEventListener('change', function (event) {
    state.showAllLinks = event.target.checked;
    if (state.groupBy === 'host') { clearFocus(); focusOn(null); rebuildHostView(); runSearch(state.query); }
    writeFragment();
  });
  document.getElementById('fit').addEventListener('click', fitAll);
  document.getElementById('show-external').addEventListener('change', writeFragment);
  document.getElementById('show-short-lived').addEventListener('change', writeFragment);

  // Esc: back to the whole map (no search, no selection, no focus).
  function clearAll() {
    clearTimeout(searchTimer);
    searchBox.value = '';
    state.query = '';
    clearFocus();
    clearSelection();
    writeFragment();
  }
  document.addEventListener('keydown', function (event) {
    if (event.key !== 'Escape') return;
    clearAll();
    if (document.activeElement === searchBox) searchBox.blur();
  });

  // ---- export: the current view as PNG or SVG, the data as JSON --------------------------

  function download(blob, name) {
    var url = URL.createObjectURL(blob);
    var link = document.createElement('a');
    link.href = url;
    link.download = name;
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(function () { URL.revokeObjectURL(url); }, 60000);
  }
  function exportPng() {
    // What is on screen, at twice its pixels, on the map's own background.
    download(cy.png({ output: 'blob', full: false, scale: 2, bg: '#fbfcfd' }), 'netviz-map.png');
  }
  // The current view as SVG: each drawn node, edge and label written from Cytoscape's own
  // geometry (endpoints, control points, label boxes) in the view's model coordinates. Names go
  // in as text nodes, so a hostile process name is text in the file, never markup.
  var SVG_NS = 'http://www.w3.org/2000/svg';
  function svgElement(tag, attributes, text) {
    var element = document.createElementNS(SVG_NS, tag);
    Object.keys(attributes).forEach(function (name) {
      if (attributes[name] !== undefined && attributes[name] !== null) element.setAttribute(name, String(attributes[name]));
    });
    if (text !== undefined) element.textContent = text;
    return element;
  }
  function svgNumber(value) { return Math.round(value * 100) / 100; }
  function svgDash(style, width) {
    if (style === 'dashed') return svgNumber(4 * width) + ' ' + svgNumber(3 * width);
    if (style === 'dotted') return svgNumber(width) + ' ' + svgNumber(2 * width);
    return null;
  }
  function svgShape(node, grow, paint) {
    var p = node.position(), w = node.width() + grow, h = node.height() + grow;
    var shape = node.style('shape');
    if (shape === 'ellipse') return svgElement('ellipse', Object.assign({ cx: svgNumber(p.x), cy: svgNumber(p.y), rx: svgNumber(w / 2), ry: svgNumber(h / 2) }, paint));
    if (shape === 'diamond' || shape === 'triangle') {
      var corners = shape === 'diamond'
        ? [[0, -h / 2], [w / 2, 0], [0, h / 2], [-w / 2, 0]]
        : [[0, -h / 2], [w / 2, h / 2], [-w / 2, h / 2]];
      return svgElement('polygon', Object.assign({ points: corners.map(function (c) { return svgNumber(p.x + c[0]) + ',' + svgNumber(p.y + c[1]); }).join(' ') }, paint));
    }
    var radius = shape === 'round-rectangle' ? Math.min(8, w / 4, h / 4) : 0;
    return svgElement('rect', Object.assign({ x: svgNumber(p.x - w / 2), y: svgNumber(p.y - h / 2), width: svgNumber(w), height: svgNumber(h), rx: svgNumber(radius) }, paint));
  }
  function svgLabel(element, box, rotation) {
    var text = element.pstyle('label').strValue;
    if (!text) return null;
    var size = element.pstyle('font-size').pfValue;
    var lines = String(text).split('\n');
    var cx = (box.x1 + box.x2) / 2, cy = (box.y1 + box.y2) / 2;
    var label = svgElement('text', {
      x: svgNumber(cx), y: svgNumber(cy - (lines.length - 1) * size * 0.6), 'font-size': svgNumber(size),
      'font-family': 'Helvetica, Arial, sans-serif', 'font-weight': element.style('font-weight') === 'bold' ? 'bold' : null,
      'text-anchor': 'middle', 'dominant-baseline': 'central', fill: element.style('color'),
      transform: rotation ? 'rotate(' + svgNumber(rotation * 180 / Math.PI) + ' ' + svgNumber(cx) + ' ' + svgNumber(cy) + ')' : null,
    });
    lines.forEach(function (line, index) {
      label.appendChild(svgElement('tspan', { x: svgNumber(cx), dy: index ? svgNumber(size * 1.2) : null }, line));
    });
    return label;
  }
  function svgNode(node) {
    var group = svgElement('g', { 'class': node.classes().join(' '), opacity: node.style('opacity') === '1' ? null : node.style('opacity') });
    var border = node.pstyle('border-width').pfValue;
    if (node.pstyle('outline-width').pfValue > 0) {
      var outline = node.pstyle('outline-width').pfValue;
      group.appendChild(svgShape(node, border + 2 * (outline + node.pstyle('outline-offset').pfValue),
        { fill: 'none', stroke: node.style('outline-color'), 'stroke-width': outline }));
    }
    group.appendChild(svgShape(node, 0, {
      fill: node.style('background-color'), 'fill-opacity': node.style('background-opacity'),
      stroke: border > 0 ? node.style('border-color') : 'none', 'stroke-width': border > 0 ? border : null,
      'stroke-dasharray': svgDash(node.style('border-style'), border),
    }));
    var label = svgLabel(node, node.boundingBox({ includeNodes: false, includeEdges: false, includeLabels: true, includeOverlays: false }),
      node.pstyle('text-rotation').pfValue);
    if (label) group.appendChild(label);
    return group;
  }
  function svgEdge(edge) {
    var group = svgElement('g', { 'class': edge.classes().join(' '), opacity: edge.style('opacity') === '1' ? null : edge.style('opacity') });
    var from = edge.sourceEndpoint(), to = edge.targetEndpoint();
    var points = edge.controlPoints() || edge.segmentPoints() || [];
    var path = 'M' + svgNumber(from.x) + ' ' + svgNumber(from.y);
    if (edge.controlPoints()) {
      // Cytoscape's beziers: one quadratic curve per control point, joined at their midpoints.
      points.forEach(function (point, index) {
        var next = points[index + 1];
        var end = next ? { x: (point.x + next.x) / 2, y: (point.y + next.y) / 2 } : to;
        path += ' Q' + svgNumber(point.x) + ' ' + svgNumber(point.y) + ' ' + svgNumber(end.x) + ' ' + svgNumber(end.y);
      });
    } else {
      points.concat([to]).forEach(function (point) { path += ' L' + svgNumber(point.x) + ' ' + svgNumber(point.y); });
    }
    var width = edge.pstyle('width').pfValue, color = edge.style('line-color');
    group.appendChild(svgElement('path', { d: path, fill: 'none', stroke: color, 'stroke-width': svgNumber(width),
      'stroke-dasharray': svgDash(edge.style('line-style'), width) }));
    if (edge.style('target-arrow-shape') !== 'none') {
      var before = points.length ? points[points.length - 1] : from;
      var angle = Math.atan2(to.y - before.y, to.x - before.x);
      var size = Math.max(6, 3 * width) * edge.pstyle('arrow-scale').value;
      var corner = function (turn) {
        return svgNumber(to.x - size * Math.cos(angle + turn)) + ',' + svgNumber(to.y - size * Math.sin(angle + turn));
      };
      group.appendChild(svgElement('polygon', { points: svgNumber(to.x) + ',' + svgNumber(to.y) + ' ' + corner(0.45) + ' ' + corner(-0.45),
        fill: edge.style('target-arrow-color') }));
    }
    var rotation = edge.pstyle('text-rotation').strValue === 'autorotate'
      ? Math.atan2(to.y - from.y, to.x - from.x) : 0;
    if (rotation > Math.PI / 2 || rotation < -Math.PI / 2) rotation += Math.PI; // never upside down
    var label = svgLabel(edge, edge.boundingBox({ includeNodes: false, includeEdges: false, includeLabels: true,
      includeSourceLabels: false, includeTargetLabels: false, includeOverlays: false }), rotation);
    if (label) group.appendChild(label);
    return group;
  }
  function viewAsSvg() {
    var view = cy.extent();
    var svg = svgElement('svg', { xmlns: SVG_NS, width: cy.width(), height: cy.height(),
      viewBox: [view.x1, view.y1, view.w, view.h].map(svgNumber).join(' ') });
    svg.appendChild(svgElement('title', {}, document.title));
    svg.appendChild(svgElement('rect', { x: svgNumber(view.x1), y: svgNumber(view.y1), width: svgNumber(view.w), height: svgNumber(view.h), fill: '#fbfcfd' }));
    // Cytoscape's order: host boxes at the bottom, then edges, then the nodes on top.
    var shown = cy.elements(':visible');
    var boxes = shown.nodes('.machine'), others = shown.nodes().not('.machine');
    boxes.forEach(function (node) { svg.appendChild(svgNode(node)); });
    shown.edges().forEach(function (edge) { svg.appendChild(svgEdge(edge)); });
    others.forEach(function (node) { svg.appendChild(svgNode(node)); });
    return new XMLSerializer().serializeToString(svg);
  }
  function exportSvg() {
    download(new Blob([viewAsSvg()], { type: 'image/svg+xml' }), 'netviz-map.svg');
  }
  function exportJson() {
    // The graph document the page was written from (as `netviz stitch --format json` writes it;
    // a large map's without the natural keys, its flows in the order of their client's host).
    if (COMPACT) { loadAllFlows(); graph.nodes = docNodes; graph.flows = docFlows; }
    download(new Blob([JSON.stringify(graph, null, 1)], { type: 'application/json' }), 'netviz-graph.json');
  }
  document.getElementById('export-png').addEventListener('click', exportPng);
  document.getElementById('export-svg').addEventListener('click', exportSvg);
  document.getElementById('export-json').addEventListener('click', function () { exportJson(); });

  // ---- what the map leaves out or is unsure of ----------------------------------------

  // One line per filter or aggregation note, then the machines whose picture is old (a failed
  // machine's last good snapshot) or partial (parts of /proc could not be read): a reader of
  // the map must know that before trusting an absent flow.
  function namesLine(names, what) {
    var shown = names.slice(0, 8).join(', ') + (names.length > 8 ? ', \u2026 (' + names.length + ' in all)' : '');
    return (names.length === 1 ? '1 host ' : names.length + ' hosts ') + what + ': ' + shown;
  }
  function showNotices() {
    var lines = (graph.notes || []).map(String);
    var newest = hosts.reduce(function (most, host) { return Math.max(most, Number(host.captured_at) || 0); }, 0);
    var stale = hosts.filter(function (host) { return host.stale; }).map(function (host) {
      var hours = (newest - (Number(host.captured_at) || newest)) / 3600;
      return String(host.name) + (hours >= 1 ? ' (' + Math.round(hours) + ' h older)' : '');
    });
    var partial = hosts.filter(function (host) { return host.complete === false; }).map(function (host) { return String(host.name); });
    if (stale.length) lines.push(namesLine(stale, 'drawn from an earlier snapshot (not reached this run)'));
    if (partial.length) lines.push(namesLine(partial, 'captured partially (not every process or namespace could be read)'));
    // A window without an event source misses connections that live between two samples.
    var blind = hosts.filter(function (host) {
      var sources = (host.window && host.window.sources) || {};
      return Object.keys(sources).some(function (name) { return sources[name] !== 'used'; });
    }).map(function (host) {
      var sources = host.window.sources;
      return String(host.name) + ' (' + Object.keys(sources).filter(function (name) { return sources[name] !== 'used'; })
        .map(function (name) { return name + ' ' + sources[name]; }).join(', ') + ')';
    });
    if (blind.length) lines.push(namesLine(blind, 'observed without some event sources (short-lived connections may be missing)'));
    var box = document.getElementById('notices');
    lines.forEach(function (line) {
      var paragraph = document.createElement('p');
      paragraph.textContent = line;
      box.appendChild(paragraph);
    });
    box.hidden = lines.length === 0;
  }
  showNotices();

  var summary = graph.summary || {};
  document.getElementById('summary').textContent =
    (summary.hosts !== undefined ? summary.hosts : machineList.length) + ' hosts \u00b7 ' +
    (COMPACT ? payload.counts.nodes : docNodes.length) + ' nodes \u00b7 ' + (COMPACT ? payload.counts.flows : usableFlows.length) + ' flows' +
    (COMPACT && payload.skipped ? ' \u00b7 ' + payload.skipped + ' flows to unknown nodes not drawn' : '') +
    (summary.outside ? ' \u00b7 ' + summary.outside + ' outside' : '') +
    (summary.unresolved ? ' \u00b7 ' + summary.unresolved + ' unresolved' : '') +
    (docFlows.length > usableFlows.length ? ' \u00b7 ' + (docFlows.length - usableFlows.length) + ' flows to unknown nodes not drawn' : '');

  // ---- what tests and benchmarks read ------------------------------------------------

  // What decodes a large map's body waits for it (a click in the first moments is kept, not lost).
  expand = whenBody(expand);
  openGroup = whenBody(openGroup);
  selectElement = whenBody(selectElement);
  exportJson = whenBody(exportJson);
  runSearch = whenBody(runSearch);

  window.netviz = {
    cy: cy, graph: graph, groupBy: state.groupBy, selected: null, lastSearch: null,
    skippedFlows: COMPACT ? payload.skipped : docFlows.length - usableFlows.length, compact: COMPACT,
    openGroup: openGroup, groups: groups,
    setGroupBy: setGroupBy, search: runSearch, expand: expand, collapseAll: collapseAll,
    focus: applyFocus, unfocus: clearFocus, clear: clearAll, focused: null,
    // Every link between hosts of the host view, drawn or not (for tests: what is drawn of the whole).
    hostLinks: function () {
      var drawn = cy.edges('.ring-edge').map(function (edge) {
        return { id: edge.id(), source: edge.source().data('machine'), target: edge.target().data('machine'), count: edge.data('weight'), shown: edge.visible() };
      });
      undrawnLinks.forEach(function (link, id) {
        if (linksShown.has(id)) return;
        drawn.push({ id: id, source: cy.getElementById(link.data.source).data('machine'), target: cy.getElementById(link.data.target).data('machine'),
          count: link.data.weight, shown: false });
      });
      return drawn;
    },
  };
  updateButtons();
  document.getElementById('show-external').checked = state.showExternal;
  document.getElementById('show-ingress').checked = state.showIngress;
  document.getElementById('show-short-lived').checked = state.showShortLived;
  hopsBox.value = String(state.hops);
  updateLinksControl();
  applyFilters();
  updateCollapse();
  addMarkLegend();
  // Only a large map's overview draws groups of hosts.
  if (!groups.length) document.getElementById('legend-group').remove();
  // The legend starts folded: open, it would hide a corner of the map.
  document.getElementById('legend').open = false;
  // A link with a fragment reopens its view: the search, then the focus.
  function reopen() {
    if (fragment.q) { searchBox.value = fragment.q; runSearch(fragment.q); }
    if (fragment.focus) applyFocus(fragment.focus, fragment.hops);
  }
  if (!COMPACT) reopen();
  timings.built = performance.now();
  cy.one('render', function () {
    timings.rendered = performance.now();
    // The frame after the first render is when the user sees the map.
    requestAnimationFrame(function () {
      timings.drawn = performance.now();
      window.netvizTimings = timings;
      if (!COMPACT) { window.netvizReady = true; return; }
      // Then a large map inflates its body; what needs it waits until then (whenBody).
      packedBody().then(function (text) {
        body = text;
        if (payload.nodesLine !== undefined) {
          var span = payload.lines[payload.nodesLine];
          decodeNodes(JSON.parse(body.substr(span[0], span[1]))).forEach(function (node) { docNodes.push(node); registerNode(node); });
        }
        timings.body = performance.now();
        fragment.groups.forEach(function (g) { openGroups.add(g); });
        fragment.open.forEach(function (name) { expanded.add(name); });
        if (fragment.open.length || fragment.groups.length) { rebuildHostView(); updateCollapse(); }
        reopen();
        waiting.splice(0).forEach(function (task) { task(); });
        window.netvizReady = true;
      }, failed);
    });
  });
  cy.forceRender();
  }
})();

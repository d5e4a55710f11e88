// netviz interactive map: draws the embedded netviz.graph/1 document with Cytoscape.js.
// Every name comes from untrusted machines, so text reaches the DOM through textContent only
// and Cytoscape draws labels on a canvas. Positions were computed by netviz (no browser layout).
(function () {
  'use strict';

  var timings = { start: performance.now() };
  var payload = JSON.parse(document.getElementById('netviz-data').textContent);
  timings.parsed = performance.now();
  var graph = payload.graph || {};
  var layout = payload.layout || { nodes: {}, machines: {} };
  var hosts = graph.hosts || [];
  var docNodes = graph.nodes || [];
  var docFlows = graph.flows || [];
  // Past this size, trade some polish (edges hidden while panning, 1:1 pixels) for fluidity.
  var BIG = docNodes.length + docFlows.length > 2000;
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
  docNodes.forEach(function (node) {
    nodeById.set(String(node.id), node);
    var machine = machineFor(String(node.host));
    machine.nodes.push(node);
    if ((node.ingress || []).length) machine.hasIngress = true;
  });
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
  var hasProcessLevel = docNodes.some(function (node) { return node.kind !== 'host'; });

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
  function rateText(flow) {
    var rate = Number(flow.per_minute) || 0;
    return '~' + (rate >= 1 ? Math.round(rate) : rate) + ' per minute';
  }
  var hasWindow = docFlows.some(function (flow) { return flow.persistent !== undefined; });
  function machineLabel(machine) {
    var text = shorten(machine.name, 48);
    var host = machine.host;
    if (host && host.stale) text += ' (stale)';
    if (host && host.complete === false) text += ' (partial)';
    return text;
  }
  function machineOutsideLabel(machine) {
    var outside = (machine.host && machine.host.outside) || {};
    var inbound = outside.inbound || 0, outbound = outside.outbound || 0;
    if (!inbound && !outbound) return machineLabel(machine);
    return machineLabel(machine) + '  \u2014 outside: ' + inbound + ' in, ' + outbound + ' out';
  }

  // ---- the two views, as Cytoscape element lists -------------------------------------

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
          id: machineId(machine), label: machineLabel(machine), labelOutside: machineOutsideLabel(machine),
          machine: machine.name, w: box[2], h: box[3],
        },
        position: { x: box[0], y: box[1] },
        classes: 'machine' + (machine.host && machine.host.stale ? ' stale' : ''),
      });
    });
    docNodes.forEach(function (node) {
      var id = String(node.id);
      var machine = machines.get(String(node.host));
      var listening = list(node.listening);
      var label = shorten(nodeName(node), 24);
      if (node.kind === 'process' && listening.length) {
        // One port per line entry, even when it listens on IPv4 and IPv6 alike.
        var ports = Array.from(new Set(listening.map(function (l) { return l.port; })));
        label += '\n' + ports.slice(0, 3).map(function (port) { return ':' + port; }).join(' ') + (ports.length > 3 ? ' \u2026' : '');
      }
      var classes = [node.kind || 'process'];
      if (listening.length) classes.push('listening');
      if (list(node.ingress).length) classes.push('ingress');
      if (node.short_lived) classes.push('short-lived');
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
      var count = flow.count || 1;
      var label = flowLabel(flow.proto, flow.server_port, count, flow.via ? [String(flow.via)] : null);
      if (isShortLived(flow)) label += ' ' + rateText(flow);
      elements.push({
        group: 'edges',
        data: {
          id: String(flow.id), source: String(flow.client), target: String(flow.server), flow: String(flow.id),
          label: label, weight: count,
        },
        classes: classes.join(' '),
      });
    });
    return elements;
  }

  // Machine view: one node per machine; flows between two machines on one service fold into one edge.
  var aggregated = new Map(); // aggregated edge id -> list of flows
  function machineViewElements() {
    var elements = [];
    machineList.forEach(function (machine) {
      var box = layout.machines[machine.name] || [0, 0];
      var processes = machine.nodes.filter(function (node) { return node.kind === 'process'; }).length;
      elements.push({
        group: 'nodes',
        data: {
          id: machineNodeId(machine), label: machineLabel(machine), labelOutside: machineOutsideLabel(machine),
          machine: machine.name, size: Math.min(90, 24 + 5 * Math.sqrt(processes)),
        },
        position: { x: box[0], y: box[1] },
        classes: 'machine-node' + (machine.hasIngress ? ' has-ingress' : '') + (machine.host && machine.host.stale ? ' stale' : ''),
      });
    });
    // Outside nodes keep their own identity: they are not processes of the machine.
    docNodes.forEach(function (node) {
      if (node.kind !== 'outside') return;
      elements.push({ group: 'nodes', data: { id: String(node.id), label: 'outside', kind: 'outside' }, position: position(String(node.id)), classes: 'outside' });
    });
    function endOf(node) {
      if (node.kind === 'outside') return String(node.id);
      return machineNodeId(machines.get(String(node.host)));
    }
    var byKey = new Map();
    usableFlows.forEach(function (flow) {
      var source = endOf(nodeById.get(String(flow.client)));
      var target = endOf(nodeById.get(String(flow.server)));
      var key = [source, target, flow.proto, flow.server_port, flow.directed !== false].join('|');
      var edge = byKey.get(key);
      if (!edge) {
        edge = { source: source, target: target, proto: flow.proto, port: flow.server_port, directed: flow.directed !== false, count: 0, via: new Set(), flows: [] };
        byKey.set(key, edge);
      }
      edge.count += flow.count || 1;
      if (flow.via) edge.via.add(String(flow.via));
      edge.flows.push(flow);
    });
    var index = 0;
    byKey.forEach(function (edge) {
      var id = 'machine-flow:' + index++;
      aggregated.set(id, edge.flows);
      var via = Array.from(edge.via).sort();
      var classes = [];
      if (!edge.directed) classes.push('undirected');
      if (via.length) classes.push('nat');
      if (edge.source === edge.target) classes.push('loop');
      if (edge.flows.every(isShortLived)) classes.push('short-lived');
      elements.push({
        group: 'edges',
        data: { id: id, source: edge.source, target: edge.target, label: flowLabel(edge.proto, edge.port, edge.count, via), weight: edge.count },
        classes: classes.join(' '),
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
      'font-size': 14, 'font-weight': 'bold', 'min-zoomed-font-size': 5, 'text-wrap': 'none' } },
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
    { selector: 'edge.ingress-mark', style: {
      'line-color': '#e07b00', 'line-style': 'dotted', 'target-arrow-shape': 'none', 'label': '', 'width': 1, 'curve-style': 'straight' } },
    { selector: '.faded', style: { 'opacity': 0.13 } },
    { selector: 'node.machine.faded', style: { 'opacity': 0.35 } },
    { selector: 'node.highlight', style: { 'border-width': 3, 'border-color': '#ff7a00', 'z-index': 20 } },
    { selector: 'edge.highlight', style: { 'line-color': '#ff6a00', 'target-arrow-color': '#ff6a00', 'width': 3, 'z-index': 20, 'min-zoomed-font-size': 4 } },
    { selector: '.match', style: { 'border-width': 4, 'border-color': '#d81b60', 'line-color': '#d81b60', 'target-arrow-color': '#d81b60', 'z-index': 30 } },
    { selector: '.focus', style: { 'border-width': 4, 'border-color': '#d32f2f', 'line-color': '#d32f2f', 'target-arrow-color': '#d32f2f', 'z-index': 40 } },
    { selector: '.hidden', style: { 'display': 'none' } },
  ];

  var state = { groupBy: hasProcessLevel ? 'process' : 'machine', showExternal: true, showIngress: true, showShortLived: true, query: '' };
  var views = {}; // groupBy -> removed Cytoscape collection, kept to restore quickly

  var initialElements = processViewElements();
  timings.elements = performance.now();

  // Fit the map from the positions we already have: Cytoscape's own fit measures every element
  // and its label first, which at thousands of elements costs a noticeable part of start-up.
  function fitView(elements, width, height) {
    var left = Infinity, top = Infinity, right = -Infinity, bottom = -Infinity;
    elements.forEach(function (element) {
      if (!element.position) return;
      var halfW = (element.data.w || 60) / 2 + 10, halfH = (element.data.h || 30) / 2 + 30;
      left = Math.min(left, element.position.x - halfW); right = Math.max(right, element.position.x + halfW);
      top = Math.min(top, element.position.y - halfH); bottom = Math.max(bottom, element.position.y + halfH);
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
    var elements = nodes.map(function (node) { return { position: node.position(), data: node.data() }; });
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
    detailsBody.replaceChildren(el('p', 'Click a machine, a process or a flow.', 'hint'));
  }
  function describeFlow(flow, from) {
    var client = nodeById.get(String(flow.client)), server = nodeById.get(String(flow.server));
    var peer = from === 'client' ? server : client;
    var arrow = flow.directed === false ? ' \u2014 ' : (from === 'client' ? ' \u2192 ' : ' \u2190 ');
    var text = arrow + nodeName(peer) + '@' + (peer ? peer.host : '?') + '  ' + flowLabel(flow.proto, flow.server_port, flow.count || 1, flow.via ? [String(flow.via)] : null);
    if (flow.inferred) text += ' (inferred)';
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
    var flows = flowsOf.get(String(node.id)) || { out: [], in: [] };
    var rows = [
      ['machine', node.host], ['kind', node.kind], ['comm', node.kind === 'process' ? node.comm : null],
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
        ['first seen', flow.first_seen === undefined ? null : new Date(flow.first_seen * 1000).toISOString()],
        ['last seen', flow.last_seen === undefined ? null : new Date(flow.last_seen * 1000).toISOString()],
      ]);
      return;
    }
    showDetails(title, [['flows', flows.length]], [{ title: 'Flows', items: flows.map(function (f) { return describeFlow(f, 'client') + '  from ' + nodeName(nodeById.get(String(f.client))) + '@' + nodeById.get(String(f.client)).host; }) }]);
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
    if (state.groupBy !== 'process' || !hasProcessLevel) return cy.collection();
    return elementsById(Array.from(names, function (name) { return machineId(machines.get(name)); }));
  }
  // One collection from many ids at once (a union per id would cost quadratic time).
  function elementsById(ids) {
    var found = [];
    ids.forEach(function (id) { var element = cy.getElementById(id); if (element.length) found.push(element[0]); });
    return cy.collection(found);
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
      if (machine) ids.push(state.groupBy === 'process' ? machineId(machine) : machineNodeId(machine));
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
  }
  function aggregatedFlows(edge) {
    if (aggregated.has(edge.id())) return aggregated.get(edge.id());
    var flow = flowById.get(edge.id());
    return flow ? [flow] : [];
  }

  cy.on('tap', function (event) {
    if (event.target === cy) {
      window.netviz.selected = null;
      clearDetails();
      runSearch(state.query);
    } else {
      selectElement(event.target);
    }
  });

  // ---- search by machine, process, address or port -------------------------------------

  var machineText = new Map(), nodeText = new Map(), nodeNumbers = new Map();
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
  function searchModel(query) {
    var q = query.trim().toLowerCase();
    var result = { machines: [], nodes: [], flows: [] };
    if (!q) return result;
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
    state.query = query;
    var result = searchModel(query);
    window.netviz.lastSearch = { query: query, machines: result.machines, nodes: result.nodes, flows: result.flows };
    if (!query.trim()) {
      searchCount.textContent = '';
      focusOn(null);
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
        var hit = machineHit.has(machine.name) || machine.nodes.some(function (n) { return n.kind !== 'outside' && nodeHit.has(String(n.id)); });
        if (hit) ids.push(machineNodeId(machine));
      });
      aggregated.forEach(function (flows, id) {
        if (flows.some(function (f) { return flowHit.has(String(f.id)); })) ids.push(id);
      });
    }
    var matched = elementsById(ids);
    matched = matched.filter(function (element) { return !element.hasClass('hidden'); });
    var parts = [];
    if (result.machines.length) parts.push(result.machines.length + (result.machines.length === 1 ? ' machine' : ' machines'));
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
    var matched = runSearch(searchBox.value);
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
  var groupButtons = { process: document.getElementById('group-process'), machine: document.getElementById('group-machine') };
  function setGroupBy(mode) {
    if (mode === state.groupBy || (mode === 'process' && !hasProcessLevel)) return;
    focusOn(null);
    // Edges out first and in last, for the same reason as at start-up (see the cytoscape() call).
    var current = cy.elements();
    cy.batch(function () { current.edges().remove(); current.nodes().remove(); });
    views[state.groupBy] = current;
    var next = views[mode];
    if (next) {
      cy.batch(function () { next.nodes().restore(); });
      cy.batch(function () { next.edges().restore(); });
    } else {
      var elements = mode === 'machine' ? machineViewElements() : processViewElements();
      cy.batch(function () { cy.add(elements.filter(function (element) { return element.group === 'nodes'; })); });
      cy.batch(function () { cy.add(elements.filter(function (element) { return element.group === 'edges'; })); });
    }
    state.groupBy = mode;
    window.netviz.groupBy = mode;
    updateButtons();
    applyFilters();
    clearDetails();
    runSearch(state.query);
    fitAll();
  }
  function updateButtons() {
    Object.keys(groupButtons).forEach(function (mode) {
      groupButtons[mode].setAttribute('aria-pressed', String(state.groupBy === mode));
    });
    groupButtons.process.disabled = !hasProcessLevel;
  }
  groupButtons.process.addEventListener('click', function () { setGroupBy('process'); });
  groupButtons.machine.addEventListener('click', function () { setGroupBy('machine'); });
  document.getElementById('show-external').addEventListener('change', function (event) {
    state.showExternal = event.target.checked;
    applyFilters();
    runSearch(state.query);
  });
  document.getElementById('show-ingress').addEventListener('change', function (event) {
    state.showIngress = event.target.checked;
    applyFilters();
  });
  document.getElementById('window-filter').hidden = !hasWindow;
  document.getElementById('show-short-lived').addEventListener('change', function (event) {
    state.showShortLived = event.target.checked;
    applyFilters();
    runSearch(state.query);
  });
  document.getElementById('fit').addEventListener('click', fitAll);

  // ---- what the map leaves out or is unsure of ----------------------------------------

  // One line per filter or aggregation note, then the machines whose picture is old (a failed
  // machine's last good snapshot) or partial (parts of /proc could not be read): a reader of
  // the map must know that before trusting an absent flow.
  function namesLine(names, what) {
    var shown = names.slice(0, 8).join(', ') + (names.length > 8 ? ', \u2026 (' + names.length + ' in all)' : '');
    return (names.length === 1 ? '1 machine ' : names.length + ' machines ') + what + ': ' + shown;
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
    (summary.hosts !== undefined ? summary.hosts : machineList.length) + ' machines \u00b7 ' +
    docNodes.length + ' nodes \u00b7 ' + usableFlows.length + ' flows' +
    (summary.outside ? ' \u00b7 ' + summary.outside + ' outside' : '') +
    (summary.unresolved ? ' \u00b7 ' + summary.unresolved + ' unresolved' : '') +
    (docFlows.length > usableFlows.length ? ' \u00b7 ' + (docFlows.length - usableFlows.length) + ' flows to unknown nodes not drawn' : '');

  // ---- what tests and benchmarks read ------------------------------------------------

  window.netviz = {
    cy: cy, graph: graph, groupBy: state.groupBy, selected: null, lastSearch: null,
    skippedFlows: docFlows.length - usableFlows.length,
    setGroupBy: setGroupBy, search: runSearch,
  };
  updateButtons();
  applyFilters();
  timings.built = performance.now();
  cy.one('render', function () {
    timings.rendered = performance.now();
    // The frame after the first render is when the user sees the map.
    requestAnimationFrame(function () {
      timings.drawn = performance.now();
      window.netvizTimings = timings;
      window.netvizReady = true;
    });
  });
  cy.forceRender();
})();

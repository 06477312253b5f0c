// The district in 3D, drawn with the vtk.js that Panel bundles (global `vtk`).
// Geometry arrives once as binary; colours, highlight and overlays arrive as
// small arrays and are applied without touching the geometry.

const MAGIC = 0x31425754; // "TWB1"
const MODEL_MAGIC = 0x314D5754; // "TWM1"
const BASEMAP_MAGIC = 0x31475754; // "TWG1"
const GROUND_Z = -0.2; // the ground plane; the basemap's kinds lie just above it, in drawing order, under the buildings
const BASEMAP_STEP_Z = 0.05;
const BACKGROUND = [0.059, 0.09, 0.141];
const HIGHLIGHT = [255, 196, 0];
// Party organisations by kind (twin.store.schema.PARTY_ORG_KINDS: committee, general branch, branch, joint branch,
// group), and the outline of what the picked one covers.
const PARTY_COLOURS = ["#b91c1c", "#f97316", "#facc15", "#a855f7", "#f472b6"];
const PARTY_OUTLINE = [1.0, 0.2, 0.2];
// By the index of twin.cases.cases.CASE_STATUSES; the field's steps (accepted, on site, handed up) last.
const STATUS_COLOURS = [[239, 68, 68], [249, 115, 22], [234, 179, 8], [34, 197, 94], [56, 189, 248],
                        [148, 163, 184], [100, 116, 139], [217, 70, 239], [45, 212, 191], [163, 230, 53],
                        [129, 140, 248]];

function asArrayBuffer(data) {
  if (!data) return null;
  if (data instanceof ArrayBuffer) return data;
  if (ArrayBuffer.isView(data)) return data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength);
  if (typeof data === "string") { // base64 fallback
    const bin = atob(data); const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out.buffer;
  }
  return null;
}

function reader(ab, offset) {
  let off = offset;
  return function take(Type, count) {
    const a = new Type(ab, off, count);
    off += Math.ceil((count * Type.BYTES_PER_ELEMENT) / 4) * 4;
    return a;
  };
}

// BIM and mesh models that stand in for their buildings' LOD1 blocks.
function parseModels(ab) {
  const models = new Map();
  if (!ab || ab.byteLength < 16) return models;
  const head = new Uint32Array(ab, 0, 4);
  if (head[0] !== MODEL_MAGIC) throw new Error("not a model buffer");
  const [, n, nv, nt] = head;
  const take = reader(ab, 16);
  const heads = take(Uint32Array, n * 3), verts = take(Float32Array, nv * 3);
  const tris = take(Uint32Array, nt * 3), elems = take(Uint32Array, nt);
  let v0 = 0, t0 = 0;
  for (let i = 0; i < n; i++) {
    const [b, cv, ct] = heads.subarray(3 * i, 3 * i + 3);
    models.set(b, { verts: verts.subarray(3 * v0, 3 * (v0 + cv)), tris: tris.subarray(3 * t0, 3 * (t0 + ct)),
                    elems: elems.subarray(t0, t0 + ct) });
    v0 += cv; t0 += ct;
  }
  return models;
}

// Buildings: footprint rings (float32 x, y relative to the origin), floor and
// top heights, and roof triangles; walls are made here from the rings. A
// building with a model (BIM or mesh) shows that model instead.
function parseBuildings(ab, models) {
  const head = new Uint32Array(ab, 0, 8);
  if (head[0] !== MAGIC) throw new Error("not a building buffer");
  const [, nb, nrings, npts, nroof, indexBytes] = head;
  const take = reader(ab, 32);
  const Index = indexBytes === 2 ? Uint16Array : Uint32Array;
  const ringsPer = take(Index, nb), ringLen = take(Index, nrings), roofPer = take(Index, nb);
  const base = take(Float32Array, nb), top = take(Float32Array, nb);
  const xy = take(Float32Array, npts * 2), roof = take(Index, nroof * 3);
  // Floors on the ground are never seen; a part that starts above ground (base > 0) keeps its underside.
  const lifted = (b) => base[b] > 0.5;
  const pointsOf = new Uint32Array(nb);
  let ncells = 0, nverts = 0;
  { let r0 = 0;
    for (let b = 0; b < nb; b++) {
      let np = 0;
      for (let r = 0; r < ringsPer[b]; r++) np += ringLen[r0 + r];
      r0 += ringsPer[b];
      pointsOf[b] = np;
      const m = models.get(b);
      if (m) { nverts += m.verts.length / 3; ncells += m.elems.length; }
      else { nverts += 2 * np; ncells += (lifted(b) ? 2 : 1) * roofPer[b] + 2 * np; }
    }
  }
  const points = new Float32Array(nverts * 3);
  const pointBuilding = new Uint32Array(nverts);
  const cells = new Uint32Array(ncells * 4);
  const cellBuilding = new Uint32Array(ncells);
  const cellElement = new Int32Array(ncells).fill(-1);
  const cellStart = new Uint32Array(nb + 1);
  const bbox = new Float32Array(nb * 6);
  let p0 = 0, r0 = 0, t0 = 0, c = 0, ci = 0, v0 = 0;
  for (let b = 0; b < nb; b++) {
    const np = pointsOf[b];
    const m = models.get(b);
    const lo = [Infinity, Infinity, Infinity], hi = [-Infinity, -Infinity, -Infinity];
    if (m) {
      const nv = m.verts.length / 3;
      points.set(m.verts, 3 * v0);
      for (let k = 0; k < nv; k++) for (let a = 0; a < 3; a++) {
        const q = m.verts[3 * k + a]; if (q < lo[a]) lo[a] = q; if (q > hi[a]) hi[a] = q;
      }
      for (let t = 0; t < m.elems.length; t++) {
        cells.set([3, v0 + m.tris[3 * t], v0 + m.tris[3 * t + 1], v0 + m.tris[3 * t + 2]], ci); ci += 4;
        cellElement[c] = m.elems[t]; cellBuilding[c++] = b;
      }
      pointBuilding.fill(b, v0, v0 + nv);
      v0 += nv;
    } else {
      for (let k = 0; k < np; k++) {
        const x = xy[2 * (p0 + k)], y = xy[2 * (p0 + k) + 1];
        const f = 3 * (v0 + k), t = 3 * (v0 + np + k);
        points[f] = x; points[f + 1] = y; points[f + 2] = base[b];
        points[t] = x; points[t + 1] = y; points[t + 2] = top[b];
        if (x < lo[0]) lo[0] = x; if (x > hi[0]) hi[0] = x; if (y < lo[1]) lo[1] = y; if (y > hi[1]) hi[1] = y;
      }
      lo[2] = base[b]; hi[2] = top[b];
      for (let t = 0; t < roofPer[b]; t++) { // the roof, and the floor reversed when lifted
        const a = roof[3 * (t0 + t)], bb = roof[3 * (t0 + t) + 1], cc = roof[3 * (t0 + t) + 2];
        cells.set([3, v0 + np + a, v0 + np + bb, v0 + np + cc], ci); ci += 4; cellBuilding[c++] = b;
        if (lifted(b)) { cells.set([3, v0 + a, v0 + cc, v0 + bb], ci); ci += 4; cellBuilding[c++] = b; }
      }
      let start = 0;
      for (let r = 0; r < ringsPer[b]; r++) { // walls: outward for CCW shells and CW holes
        const n = ringLen[r0 + r];
        for (let k = 0; k < n; k++) {
          const fk = v0 + start + k, fn = v0 + start + ((k + 1) % n);
          cells.set([3, fk, fn, fn + np], ci); ci += 4; cellBuilding[c++] = b;
          cells.set([3, fk, fn + np, fk + np], ci); ci += 4; cellBuilding[c++] = b;
        }
        start += n;
      }
      pointBuilding.fill(b, v0, v0 + 2 * np);
      v0 += 2 * np;
    }
    bbox.set([lo[0], lo[1], lo[2], hi[0], hi[1], hi[2]], 6 * b);
    p0 += np; r0 += ringsPer[b]; t0 += roofPer[b];
    cellStart[b + 1] = c;
  }
  return { nb, points, pointBuilding, cells, cellBuilding, cellElement, cellStart, bbox };
}

function floatBuffer(data) {
  const ab = asArrayBuffer(data);
  return ab && ab.byteLength ? new Float32Array(ab) : new Float32Array(0);
}

export function render({ model, el }) {
  // The UI's strings come from the Python side's catalogue (scenes/i18n.py js_texts), by their English msgid.
  const _ = (message) => (model.texts && model.texts[message]) || message;
  // Marks for tests and benches go on the page only when the server asks for them (`probes`).
  const probe = model.probes ? window : {};
  const marks = probe.twinMarks = { render: performance.now() }; // where the first frame's time goes
  const vtk = window.vtk;
  const container = document.createElement("div");
  container.className = "twin-view";
  container.style.cssText = "position:relative;width:100%;height:100%;min-height:300px;overflow:hidden;";
  el.appendChild(container);
  if (!vtk) {
    container.textContent = _("The 3D view needs vtk.js, which did not load.");
    return;
  }
  const { vtkGenericRenderWindow } = vtk.Rendering.Misc;
  const { vtkActor, vtkMapper, vtkLight } = vtk.Rendering.Core;
  const { vtkPolyData } = vtk.Common.DataModel;
  const { vtkDataArray } = vtk.Common.Core;

  const canvasHolder = document.createElement("div");
  canvasHolder.style.cssText = "position:absolute;inset:0;";
  container.appendChild(canvasHolder);
  // Multisampling quadruples what software GL (SwiftShader, llvmpipe: thin clients, VMs, headless) draws
  // per frame, so the window starts without it and is made again with it only on a real GPU.
  function makeWindow(antialias) {
    const nativeGetContext = HTMLCanvasElement.prototype.getContext;
    HTMLCanvasElement.prototype.getContext = function (type, attrs) {
      return nativeGetContext.call(this, type, String(type).startsWith("webgl") ? { ...attrs, antialias } : attrs);
    };
    try {
      const w = vtkGenericRenderWindow.newInstance({ background: BACKGROUND, listenWindowResize: false });
      w.setContainer(canvasHolder);
      return w;
    } finally {
      HTMLCanvasElement.prototype.getContext = nativeGetContext;
    }
  }
  let grw = makeWindow(false);
  const gl = grw.getApiSpecificRenderWindow().getContext();
  const debugInfo = gl && gl.getExtension("WEBGL_debug_renderer_info");
  const glRenderer = String(gl ? gl.getParameter(debugInfo ? debugInfo.UNMASKED_RENDERER_WEBGL : gl.RENDERER) : "");
  if (!/swiftshader|llvmpipe|softpipe|software/i.test(glRenderer)) {
    grw.delete();
    canvasHolder.replaceChildren();
    grw = makeWindow(true);
  }
  probe.twinGL = { renderer: glRenderer,
                   antialias: !!grw.getApiSpecificRenderWindow().getContext().getContextAttributes().antialias };
  const renderer = grw.getRenderer();
  const renderWindow = grw.getRenderWindow();
  const glWindow = grw.getApiSpecificRenderWindow();
  const interactor = grw.getInteractor();

  // Map-like navigation: left drag orbits around world-up, right or shift drag pans, wheel zooms.
  const M = vtk.Interaction.Manipulators;
  const style = vtk.Interaction.Style.vtkInteractorStyleManipulator.newInstance();
  const rotate = M.vtkMouseCameraTrackballRotateManipulator.newInstance({ button: 1 });
  rotate.setUseWorldUpVec(true); rotate.setWorldUpVec(0, 0, 1);
  style.addMouseManipulator(rotate);
  style.addMouseManipulator(M.vtkMouseCameraTrackballPanManipulator.newInstance({ button: 3 }));
  style.addMouseManipulator(M.vtkMouseCameraTrackballPanManipulator.newInstance({ button: 1, shift: true }));
  style.addMouseManipulator(M.vtkMouseCameraTrackballZoomManipulator.newInstance({ button: 2 }));
  style.addMouseManipulator(M.vtkMouseCameraTrackballZoomManipulator.newInstance({ scrollEnabled: true, dragEnabled: false }));
  interactor.setInteractorStyle(style);

  // Light from above plus a weaker headlight, so roofs and walls read apart.
  renderer.setAutomaticLightCreation(false);
  renderer.removeAllLights();
  const sun = vtkLight.newInstance({ intensity: 0.75 });
  sun.setLightTypeToSceneLight(); sun.setPositional(false);
  sun.setPosition(0.35, -0.55, 1.0); sun.setFocalPoint(0, 0, 0);
  const head = vtkLight.newInstance({ intensity: 0.45 });
  head.setLightTypeToHeadLight();
  renderer.addLight(sun); renderer.addLight(head);

  function makeActor(pickable = true) {
    const polydata = vtkPolyData.newInstance();
    const mapper = vtkMapper.newInstance();
    mapper.setInputData(polydata);
    const actor = vtkActor.newInstance();
    actor.setMapper(mapper);
    actor.setPickable(pickable);
    renderer.addActor(actor);
    return { polydata, mapper, actor };
  }

  const state = { layer: null, colours: null, selected: -1, hiddenGrid: null, bounds: null, camRec: new Float32Array(0),
                  clickSeq: 0, firstFrame: false, labels: [], cameraCount: 0, cameraTotal: 0, camIndex: null,
                  caseRec: [], caseFresh: new Map(), pendingDrawn: [] };
  const ground = makeActor(false);
  const basemap = makeActor(false);
  const buildings = makeActor(true);
  const gridLines = makeActor(false);
  const gridHighlight = makeActor(false);
  const cameras = makeActor(true);
  const cones = makeActor(false);
  const partyOutline = makeActor(false);
  buildings.actor.getProperty().setInterpolationToFlat();
  buildings.actor.getProperty().setAmbient(0.25);
  buildings.actor.getProperty().setDiffuse(0.8);
  buildings.mapper.setScalarModeToUsePointData();
  buildings.mapper.setColorModeToDirectScalars();
  ground.actor.getProperty().setColor(0.105, 0.165, 0.286);
  ground.actor.getProperty().setLighting(false);
  gridLines.actor.getProperty().setColor(0.9, 0.93, 0.97);
  gridLines.actor.getProperty().setLineWidth(1.5);
  gridLines.actor.getProperty().setLighting(false);
  gridHighlight.actor.getProperty().setColor(0.22, 0.74, 0.97);
  gridHighlight.actor.getProperty().setLineWidth(4);
  gridHighlight.actor.getProperty().setLighting(false);
  cameras.mapper.setScalarModeToUseCellData();
  cameras.mapper.setColorModeToDirectScalars();
  basemap.mapper.setScalarModeToUseCellData();
  basemap.mapper.setColorModeToDirectScalars();
  basemap.actor.getProperty().setLighting(false);
  cones.actor.getProperty().setColor(0.22, 0.74, 0.97);
  cones.actor.getProperty().setOpacity(0.15);  // faces, not lines: close up, lines alias into a wireframe
  cones.actor.getProperty().setLighting(false);
  cones.actor.getProperty().setBackfaceCulling(false);

  partyOutline.actor.getProperty().setColor(...PARTY_OUTLINE);
  partyOutline.actor.getProperty().setLineWidth(4);
  partyOutline.actor.getProperty().setLighting(false);

  const deferred = [ground, basemap, gridLines, gridHighlight];
  for (const a of [...deferred, cameras, cones, partyOutline]) a.actor.setVisibility(false);

  // Overlay elements: tooltip, legend, labels, navigation buttons.
  const overlay = document.createElement("div");
  overlay.style.cssText = "position:absolute;inset:0;pointer-events:none;font-size:12px;color:#e6edf7;";
  container.appendChild(overlay);
  // Case markers live on a 2D canvas over the 3D one: a live change redraws only these dots, never the
  // whole district, which software GL takes a large part of a second to draw.
  const caseCanvas = document.createElement("canvas");
  caseCanvas.className = "twin-cases";
  caseCanvas.style.cssText = "position:absolute;inset:0;width:100%;height:100%;";
  overlay.appendChild(caseCanvas);
  const labelLayer = document.createElement("div");
  overlay.appendChild(labelLayer);
  // Party organisations' marks: each one a button over the view (a click opens its grid's card).
  const partyLayer = document.createElement("div");
  partyLayer.className = "twin-party-layer";
  overlay.appendChild(partyLayer);
  const tooltip = document.createElement("div");
  tooltip.className = "twin-tooltip";
  tooltip.style.cssText = "position:absolute;display:none;background:rgba(15,23,36,.92);border:1px solid #38bdf8;" +
    "padding:4px 8px;border-radius:4px;white-space:nowrap;";
  overlay.appendChild(tooltip);
  const legend = document.createElement("div");
  legend.className = "twin-legend";
  legend.style.cssText = "position:absolute;left:10px;bottom:10px;background:rgba(15,23,36,.85);padding:6px 10px;" +
    "border-radius:4px;";
  overlay.appendChild(legend);
  // What the markers mean: case dots by status (only open cases are drawn), camera dots and their view cones.
  const markerLegend = document.createElement("div");
  markerLegend.className = "twin-marker-legend";
  markerLegend.style.cssText = "position:absolute;right:10px;bottom:10px;background:rgba(15,23,36,.85);" +
    "padding:6px 10px;border-radius:4px;";
  overlay.appendChild(markerLegend);
  const buttons = document.createElement("div");
  buttons.style.cssText = "position:absolute;right:10px;top:10px;display:flex;gap:4px;pointer-events:auto;";
  overlay.appendChild(buttons);
  for (const [name, label, title] of [["oblique", _("3D"), _("Oblique view")], ["top", _("Top"), _("Top view")],
                                      ["reset", _("Reset"), _("Reset view")]]) {
    const b = document.createElement("button");
    b.textContent = label;
    b.title = title;
    b.className = `twin-nav-${name}`;
    b.style.cssText = "background:#16213a;color:#e6edf7;border:1px solid #38bdf8;border-radius:4px;padding:3px 8px;cursor:pointer;";
    b.addEventListener("click", () => setView(name));
    buttons.appendChild(b);
  }

  // Renders are coalesced into the next animation frame: software GL makes each one costly.
  let renderQueued = false, removed = false, overlaysTimer = 0, overlaysShown = false;
  const OVERLAYS_WAIT_MS = 1500;
  function showOverlays() {
    clearTimeout(overlaysTimer);
    if (overlaysShown || removed || !state.firstFrame) return;
    overlaysShown = true;
    for (const a of deferred) a.actor.setVisibility(true);
    applyLayerVisibility();
  }
  function render() {
    if (renderQueued) return;
    renderQueued = true;
    requestAnimationFrame(() => {
      renderQueued = false;
      if (removed) return;
      if (!state.firstFrame) marks.renderCall = performance.now();
      renderWindow.render();
      if (tiled.root) updateTiles();
      if (!state.firstFrame && (state.layer || tiled.drawn.size || (tiled.root && !tiled.pending.size))) {
        state.firstFrame = true;
        // Everything else waits until the frame is on screen (two animation frames on): the side panels and
        // the cameras, which Python sends on `ready`, and the overlays, which each need a shader that software
        // GL compiles slowly. The overlays are drawn with the cameras, in one more frame: with software
        // compositing, every frame that changes the canvas holds the page until the whole district is drawn
        // again and read back (150-650 ms each on SwiftShader), and the page was making five of them.
        requestAnimationFrame(() => requestAnimationFrame(() => {
          if (removed) return;
          probe.twinFirstFrame = performance.now();
          model.ready = true;
          queueCases();
          overlaysTimer = setTimeout(showOverlays, OVERLAYS_WAIT_MS); // a district without cameras
        }));
      }
    });
  }

  // --- buildings --------------------------------------------------------
  function loadBuildings() {
    const ab = asArrayBuffer(model.buildings);
    if (!ab || ab.byteLength < 32) return;
    probe.twinBufferBytes = ab.byteLength;  // the single buffer came (a tiled view gets none)
    const first = !state.layer;
    marks.load = marks.load || performance.now();
    const layer = parseBuildings(ab, parseModels(asArrayBuffer(model.models)));
    marks.parsed = marks.parsed || performance.now();
    state.layer = layer;
    buildings.polydata.getPoints().setData(layer.points, 3);
    buildings.polydata.getPolys().setData(layer.cells);
    // Colours per point (each building owns its points): no cell-to-point expansion on the GPU side.
    const colours = vtkDataArray.newInstance({ name: "colour", numberOfComponents: 3,
                                               values: new Uint8Array(layer.pointBuilding.length * 3) });
    buildings.polydata.getPointData().setScalars(colours);
    state.colours = colours;
    let b = [Infinity, Infinity, Infinity, -Infinity, -Infinity, -Infinity];
    for (let i = 0; i < layer.nb; i++) {
      for (let k = 0; k < 3; k++) {
        b[k] = Math.min(b[k], layer.bbox[6 * i + k]);
        b[k + 3] = Math.max(b[k + 3], layer.bbox[6 * i + 3 + k]);
      }
    }
    setBounds(b);
    applyColours();
    if (first) setView("oblique", false);
  }

  // The district's box (relative to the origin), and the ground plane under it.
  function setBounds(b) {
    state.bounds = b;
    const pad = 0.15 * Math.max(b[3] - b[0], b[4] - b[1]);
    const z = GROUND_Z;
    const g = new Float32Array([b[0] - pad, b[1] - pad, z, b[3] + pad, b[1] - pad, z,
                                b[3] + pad, b[4] + pad, z, b[0] - pad, b[4] + pad, z]);
    ground.polydata.getPoints().setData(g, 3);
    ground.polydata.getPolys().setData(new Uint32Array([4, 0, 1, 2, 3]));
  }

  function applyColours() {
    if (state.layer && state.colours) {
      colourPoints(state.layer.pointBuilding, state.colours);
      buildings.polydata.modified();
    }
    for (const tile of tiled.loaded.values()) { colourPoints(tile.pointBuilding, tile.colours); tile.actor.polydata.modified(); }
    render();
  }

  // `colors` as RGB per building: it comes as a palette and one byte per building (scenes/layers.py
  // indexed_colours; a third of RGB, before the first frame), or as RGB.
  const COLOURS_MAGIC = 0x31435754;
  let rgbOfBuildings = null;
  function buildingRGB() {
    if (rgbOfBuildings) return rgbOfBuildings;
    const ab = asArrayBuffer(model.colors) || new ArrayBuffer(0);
    if (ab.byteLength >= 12 && new Uint32Array(ab, 0, 1)[0] === COLOURS_MAGIC) {
      const [, n, k] = new Uint32Array(ab, 0, 3);
      const palette = new Uint8Array(ab, 12, 3 * k), index = new Uint8Array(ab, 12 + 4 * Math.ceil((3 * k) / 4), n);
      rgbOfBuildings = new Uint8Array(3 * n);
      for (let i = 0; i < n; i++) {
        const c = 3 * index[i];
        rgbOfBuildings[3 * i] = palette[c]; rgbOfBuildings[3 * i + 1] = palette[c + 1]; rgbOfBuildings[3 * i + 2] = palette[c + 2];
      }
    } else {
      rgbOfBuildings = new Uint8Array(ab);
    }
    return rgbOfBuildings;
  }

  // Each point takes its building's colour from the small per-building array (`colors`), or the highlight.
  function colourPoints(pointBuilding, colours) {
    const src = buildingRGB();
    const out = colours.getData();
    const cb = pointBuilding;
    const sel = model.selected;
    for (let c = 0; c < cb.length; c++) {
      const b = cb[c];
      if (b === sel) { out[3 * c] = HIGHLIGHT[0]; out[3 * c + 1] = HIGHLIGHT[1]; out[3 * c + 2] = HIGHLIGHT[2]; }
      else if (src.length >= 3 * (b + 1)) { out[3 * c] = src[3 * b]; out[3 * c + 1] = src[3 * b + 1]; out[3 * c + 2] = src[3 * b + 2]; }
      else { out[3 * c] = 143; out[3 * c + 1] = 179; out[3 * c + 2] = 217; }
    }
    colours.modified();
  }

  // --- streamed tiles (model.tileset) -----------------------------------
  // A 3D Tiles 1.1 tileset served beside the app (scenes/tileserve.py) instead of one buffer of every building.
  // Each tile node carries extras.district_map, the map from the tileset's ENU frame to the district frame the
  // rest of the view draws in. Tiles are chosen by screen-space error whenever the camera settles; each tile's
  // features come with their building indices (its ids file), so colours, highlight and picks go through the same
  // small per-building arrays as the single buffer: a colouring rewrites each loaded tile's colour attribute from
  // them and never fetches geometry again. Every tile has content: the leaves every building at full detail, the
  // tiles above them each building's LOD1 block or blocks that stand for several (twin/tiles/lod.py), whose
  // feature is their main building (for colours) and which a click flies into rather than picks.
  // While the camera flies, the tiles are chosen for where it lands (tiled.landing) and fetched meanwhile, the
  // tiles the landing view draws first: the view keeps drawing where it flies from until it lands.
  const MAX_SSE = 16, MAX_TILES_KEPT = 128, MAX_FETCHES = 4;
  const tiled = { root: null, base: "", loaded: new Map(), pending: new Set(), drawn: new Set(), queue: [],
                  fetching: 0, seq: 0, bytes: 0, landing: null, flown: new Set() };
  probe.twinTiles = { loaded: [], drawn: [], bytes: 0, requested: 0 };

  // A tile's map from the tileset's ENU frame to the district frame (scenes/tileserve.py): quadratic terms about
  // the tile's centre, which take the earth's curvature and the CRS's convergence (under a millimetre over 4 km).
  function applyMap(m, e, n, u) {
    const x = e - m.centre[0], y = n - m.centre[1], z = u - m.centre[2], c = m.coefficients;
    const t = [x, y, z, 1, x * x, y * y, x * y, x * z, y * z], out = [0, 0, 0];
    for (let i = 0; i < 3; i++) for (let j = 0; j < 9; j++) out[i] += c[9 * i + j] * t[j];
    return out;
  }

  function prepareNode(json, parent) {
    const a = (json.extras && json.extras.district_map) || parent.map;
    const b = json.boundingVolume.box, lo = [Infinity, Infinity, Infinity], hi = [-Infinity, -Infinity, -Infinity];
    const half = [0, 1, 2].map((k) => Math.abs(b[3 + k]) + Math.abs(b[6 + k]) + Math.abs(b[9 + k]));
    for (const sx of [-1, 1]) for (const sy of [-1, 1]) for (const sz of [-1, 1]) {
      const p = applyMap(a, b[0] + sx * half[0], b[1] + sy * half[1], b[2] + sz * half[2]);
      for (let k = 0; k < 3; k++) { lo[k] = Math.min(lo[k], p[k]); hi[k] = Math.max(hi[k], p[k]); }
    }
    const node = { error: json.geometricError, uri: json.content ? json.content.uri : null, map: a, parent: parent.node,
                   depth: parent.node ? parent.node.depth + 1 : 0,
                   box: new Float32Array([...lo, ...hi]), centre: [0, 1, 2].map((k) => (lo[k] + hi[k]) / 2),
                   radius: 0.5 * Math.hypot(hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]), children: [] };
    node.children = (json.children || []).map((c) => prepareNode(c, { map: a, node }));
    return node;
  }

  async function loadTileset() {
    const url = model.tileset;
    if (!url || tiled.root) return;
    marks.load = marks.load || performance.now();
    const doc = await (await fetch(url, { credentials: "same-origin" })).json();
    tiled.base = new URL(".", new URL(url, window.location.href)).href;
    tiled.root = prepareNode(doc.root, { map: null, node: null });
    marks.parsed = marks.parsed || performance.now();
    const b = Array.from(tiled.root.box);
    b[2] = Math.min(b[2], 0);
    setBounds(b);
    setView("oblique", false);
  }

  // REPLACE refinement: a tile whose screen-space error is small enough is drawn with its content; else its
  // children are, once every child in view is ready to be drawn. Until then the tile stands in for all of them
  // (fetched too, when it is not yet loaded), or else its nearest loaded ancestor does: never a parent beside its
  // children. Returns whether the tile's part of the view is covered by loaded content; `want` gets what to fetch.
  function selectTiles(node, view, draw, want) {
    // outside the cone around the line of sight that holds the screen: neither this tile nor any under it
    const c = node.centre, e = view.eye, v = [c[0] - e[0], c[1] - e[1], c[2] - e[2]];
    const dist = Math.hypot(v[0], v[1], v[2]);
    if (dist > node.radius) {
      const off = Math.acos(Math.min(1, (v[0] * view.dir[0] + v[1] * view.dir[1] + v[2] * view.dir[2]) / dist));
      if (off > view.halfAngle + Math.asin(node.radius / dist)) return true;
    }
    const loaded = tiled.loaded.has(node);
    const refine = node.children.length && (node.error * view.k) / Math.max(dist - node.radius, 1) > MAX_SSE;
    if (!refine) {
      if (!node.uri) return true;
      node.standIn = false;
      want.push(node);
      if (loaded) draw.push(node);
      return loaded;
    }
    const mark = draw.length;
    let ready = true;
    for (const child of node.children) ready = selectTiles(child, view, draw, want) && ready;
    if (ready || !node.uri) return ready;
    node.standIn = true;  // drawn only until its children are ready
    want.push(node);
    if (!loaded) return false;  // the children drawn so far stay, unless an ancestor stands in for them
    draw.length = mark;
    draw.push(node);
    return true;
  }

  // Which tiles to draw for the camera as it is, and which to fetch: coarser first (each stands in for all the
  // tiles under it), then nearest first. In flight, only which to fetch for where it lands: the tiles that view
  // draws first, nearest first, then their stand-ins.
  function updateTiles() {
    if (!tiled.root) return;
    const cam = renderer.getActiveCamera(), landing = tiled.landing;
    const [w, h] = glWindow.getSize();
    const eye = landing ? landing.pos : cam.getPosition(), fp = landing ? landing.fp : cam.getFocalPoint();
    const tanHalf = Math.tan((cam.getViewAngle() * Math.PI) / 360);
    const look = [fp[0] - eye[0], fp[1] - eye[1], fp[2] - eye[2]], len = Math.hypot(...look) || 1;
    const view = { eye, dir: look.map((x) => x / len), k: h / (2 * tanHalf),
                   halfAngle: Math.atan(tanHalf * Math.hypot(1, w / Math.max(h, 1))) };
    const draw = [], want = [];
    selectTiles(tiled.root, view, draw, want);
    tiled.seq += 1;
    for (const node of [...draw, ...want]) node.used = tiled.seq;
    for (const node of want) {
      if (!tiled.loaded.has(node) && !tiled.pending.has(node)) {
        node.distance = Math.hypot(node.centre[0] - eye[0], node.centre[1] - eye[1], node.centre[2] - eye[2]);
        tiled.pending.add(node);
        tiled.queue.push(node);
      }
    }
    tiled.queue = tiled.queue.filter((n) => n.used === tiled.seq || n.fetching);
    for (const n of tiled.pending) if (!n.fetching && n.used !== tiled.seq) tiled.pending.delete(n);
    if (landing) {
      tiled.queue.sort((a, b) => b.standIn - a.standIn || b.distance - a.distance);  // pop() takes the last
      pumpTiles();
      return;
    }
    tiled.queue.sort((a, b) => b.depth - a.depth || b.distance - a.distance);  // pop() takes the last
    tiled.drawn = new Set(draw);
    let changed = false;
    for (const [node, tile] of tiled.loaded) {
      const shown = tiled.drawn.has(node);
      if (shown !== tile.actor.actor.getVisibility()) { tile.actor.actor.setVisibility(shown); changed = true; }
    }
    renderer.resetCameraClippingRange();  // the near and far planes follow what is drawn
    probe.twinTiles.drawn = draw.map((n) => n.uri);
    evictTiles();
    pumpTiles();
    // A tile shown or hidden here is on screen after the next frame; every tile wanted is drawn once none is
    // (a stand-in no longer wanted may still be on its way).
    if (changed) render();
    else if (want.every((n) => tiled.loaded.has(n))) probe.twinTilesSettled = performance.now();
  }

  function evictTiles() {
    if (tiled.loaded.size <= MAX_TILES_KEPT) return;
    const old = [...tiled.loaded.keys()].filter((n) => !tiled.drawn.has(n)).sort((a, b) => a.used - b.used);
    for (const node of old.slice(0, tiled.loaded.size - MAX_TILES_KEPT)) {
      const tile = tiled.loaded.get(node);
      renderer.removeActor(tile.actor.actor);
      tile.actor.actor.delete(); tile.actor.mapper.delete(); tile.actor.polydata.delete();
      tiled.loaded.delete(node);
    }
    probe.twinTiles.loaded = [...tiled.loaded.keys()].map((n) => n.uri);
  }

  // While the tiles a flight asked for are on their way, no stand-in is fetched: it would come after them.
  function pumpTiles() {
    while (tiled.fetching < MAX_FETCHES && tiled.queue.length) {
      let k = tiled.queue.length - 1;  // the coarsest, then the nearest
      if (tiled.flown.size) while (k >= 0 && tiled.queue[k].standIn) k -= 1;
      if (k < 0) break;
      const node = tiled.queue.splice(k, 1)[0];
      node.fetching = true;
      tiled.fetching += 1;
      probe.twinTiles.requested += 1;
      if (tiled.landing && !node.standIn) tiled.flown.add(node);
      fetchTile(node).catch((e) => console.error(`tile ${node.uri}: ${e}`)).finally(() => {
        node.fetching = false; tiled.fetching -= 1; tiled.pending.delete(node); tiled.flown.delete(node);
        if (!removed) { updateTiles(); if (!tiled.landing) render(); }  // in flight, every frame is drawn anyway
      });
    }
  }

  async function fetchTile(node) {
    const get = async (url) => {
      const res = await fetch(url, { credentials: "same-origin" });
      if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
      return res.arrayBuffer();
    };
    let withParts = false;  // the ids' answer says whether a model's parts may be picked in this tile
    const [glb, ids] = await Promise.all([get(tiled.base + node.uri), fetch(tiled.base + "ids/" + node.uri,
      { credentials: "same-origin" }).then((res) => {
        if (!res.ok) throw new Error(`ids of ${node.uri}: HTTP ${res.status}`);
        withParts = res.headers.get("X-Twin-Elements") === "1";
        return res.arrayBuffer();
      })]);
    const parts = withParts ? await get(tiled.base + "elements/" + node.uri) : null;
    if (removed) return;
    tiled.bytes += glb.byteLength + ids.byteLength + (parts ? parts.byteLength : 0);
    probe.twinTiles.bytes = tiled.bytes;
    const tile = parseTile(glb, new Uint32Array(ids), node.map);
    tile.elements = parts ? new Uint32Array(parts) : null;  // per triangle, in the order of tile.cells
    tile.actor = makeActor(false);
    const prop = tile.actor.actor.getProperty();
    prop.setInterpolationToFlat(); prop.setAmbient(0.25); prop.setDiffuse(0.8);
    tile.actor.mapper.setScalarModeToUsePointData();
    tile.actor.mapper.setColorModeToDirectScalars();
    tile.actor.polydata.getPoints().setData(tile.points, 3);
    tile.actor.polydata.getPolys().setData(tile.cells);
    tile.colours = vtkDataArray.newInstance({ name: "colour", numberOfComponents: 3,
                                              values: new Uint8Array(tile.pointBuilding.length * 3) });
    tile.actor.polydata.getPointData().setScalars(tile.colours);
    tile.actor.actor.setVisibility(false);
    tiled.loaded.set(node, tile);
    node.used = tiled.seq;
    probe.twinTiles.loaded = [...tiled.loaded.keys()].map((n) => n.uri);
    colourPoints(tile.pointBuilding, tile.colours);
  }

  // One tile's GLB (twin/tiles/glb.py): one primitive, one node whose translation and uniform scale place it (in
  // glTF's y-up axes); positions float32 or normalized 16-bit (KHR_mesh_quantization), normals (if any) unused:
  // the actor shades flat. _FEATURE_ID_0 per vertex (16-bit or float). Points come out in the district frame,
  // triangles grouped by feature; `stands` is how many buildings each feature stands for (a block: more than 1).
  const COMPONENTS = { 5120: [Int8Array, 127], 5121: [Uint8Array, 255], 5122: [Int16Array, 32767],
                       5123: [Uint16Array, 65535], 5125: [Uint32Array, 0], 5126: [Float32Array, 0] };
  function parseTile(ab, ids, m) {
    const head = new DataView(ab);
    if (head.getUint32(0, true) !== 0x46546C67) throw new Error("not a GLB file");
    const jsonLength = head.getUint32(12, true);
    const doc = JSON.parse(new TextDecoder().decode(new Uint8Array(ab, 20, jsonLength)));
    const bin = 28 + jsonLength;
    const accessor = (i) => {  // { data, stride, scale }: element v's component k is data[v * stride + k] * scale
      const acc = doc.accessors[i], view = doc.bufferViews[acc.bufferView];
      const [Type, max] = COMPONENTS[acc.componentType];
      const width = { SCALAR: 1, VEC2: 2, VEC3: 3, VEC4: 4 }[acc.type];
      const stride = (view.byteStride || width * Type.BYTES_PER_ELEMENT) / Type.BYTES_PER_ELEMENT;
      const data = new Type(ab, bin + view.byteOffset + (acc.byteOffset || 0), (acc.count - 1) * stride + width);
      return { data, stride, scale: acc.normalized ? 1 / max : 1 };
    };
    const prim = doc.meshes[0].primitives[0];
    const pos = accessor(prim.attributes.POSITION), feat = accessor(prim.attributes._FEATURE_ID_0);
    const idx = accessor(prim.indices).data;
    const node = doc.nodes[0], t = node.translation || [0, 0, 0], s = (node.scale || [1, 1, 1]).map((k) => k * pos.scale);
    const nv = doc.accessors[prim.attributes.POSITION].count, nt = idx.length / 3, nf = ids.length;
    const table = doc.extensions && doc.extensions.EXT_structural_metadata &&
      doc.extensions.EXT_structural_metadata.propertyTables[0];
    const standsFor = table && table.properties.buildings;
    const stands = standsFor ? new Uint32Array(ab, bin + doc.bufferViews[standsFor.values].byteOffset, nf) : null;
    const points = new Float32Array(nv * 3), pointBuilding = new Uint32Array(nv), feature = new Uint32Array(nv);
    const featBox = new Float32Array(nf * 6);
    for (let f = 0; f < nf; f++) featBox.set([Infinity, Infinity, Infinity, -Infinity, -Infinity, -Infinity], 6 * f);
    const P = pos.data, ps = pos.stride;
    for (let v = 0; v < nv; v++) {  // glTF (x, y, z) is east, up, -north
      const x = P[ps * v] * s[0] + t[0], y = P[ps * v + 1] * s[1] + t[1], z = P[ps * v + 2] * s[2] + t[2];
      const p = applyMap(m, x, -z, y);
      points[3 * v] = p[0]; points[3 * v + 1] = p[1]; points[3 * v + 2] = p[2];
      const f = feat.data[feat.stride * v];
      feature[v] = f;
      pointBuilding[v] = ids[f];
      for (let k = 0; k < 3; k++) {
        if (p[k] < featBox[6 * f + k]) featBox[6 * f + k] = p[k];
        if (p[k] > featBox[6 * f + 3 + k]) featBox[6 * f + 3 + k] = p[k];
      }
    }
    const featStart = new Uint32Array(nf + 1);  // triangles by feature, for picking
    for (let c = 0; c < nt; c++) featStart[feature[idx[3 * c]] + 1] += 1;
    for (let f = 0; f < nf; f++) featStart[f + 1] += featStart[f];
    const fill = featStart.slice(0, nf), cells = new Uint32Array(nt * 4);
    for (let c = 0; c < nt; c++) {
      const o = 4 * fill[feature[idx[3 * c]]]++;
      cells[o] = 3; cells[o + 1] = idx[3 * c]; cells[o + 2] = idx[3 * c + 1]; cells[o + 3] = idx[3 * c + 2];
    }
    return { points, pointBuilding, cells, ids, featBox, featStart, nf, stands };
  }


  // --- the ground: roads, water and green space ---------------------------
  // One buffer of triangles by kind (scenes/layers.py basemap_layer), flat just above the ground plane. It
  // arrives after the first frame and joins the deferred overlays, drawn in their frame.
  function loadBasemap() {
    const ab = asArrayBuffer(model.basemap);
    if (!ab || ab.byteLength < 16) return;
    const head = new Uint32Array(ab, 0, 4);
    if (head[0] !== BASEMAP_MAGIC) throw new Error("not a basemap buffer");
    const [, nk, nv, nt] = head;
    const take = reader(ab, 16);
    const perKind = take(Uint32Array, nk), rgb = take(Uint8Array, nk * 3);
    const xy = take(Float32Array, nv * 2), tris = take(Uint32Array, nt * 3);
    const pts = new Float32Array(nv * 3), cells = new Uint32Array(nt * 4), colour = new Uint8Array(nt * 3);
    for (let v = 0; v < nv; v++) { pts[3 * v] = xy[2 * v]; pts[3 * v + 1] = xy[2 * v + 1]; }
    let t = 0;
    for (let k = 0; k < nk; k++) {
      const z = GROUND_Z + BASEMAP_STEP_Z * (k + 1);
      for (const end = t + perKind[k]; t < end; t++) {
        const a = tris[3 * t], b = tris[3 * t + 1], c = tris[3 * t + 2];
        pts[3 * a + 2] = z; pts[3 * b + 2] = z; pts[3 * c + 2] = z;
        cells[4 * t] = 3; cells[4 * t + 1] = a; cells[4 * t + 2] = b; cells[4 * t + 3] = c;
        colour[3 * t] = rgb[3 * k]; colour[3 * t + 1] = rgb[3 * k + 1]; colour[3 * t + 2] = rgb[3 * k + 2];
      }
    }
    basemap.polydata.getPoints().setData(pts, 3);
    basemap.polydata.getPolys().setData(cells);
    basemap.polydata.getCellData().setScalars(vtkDataArray.newInstance({ name: "colour", numberOfComponents: 3,
                                                                        values: colour }));
    basemap.polydata.modified();
    probe.twinBasemap = nt;
    marks.basemap = marks.basemap || performance.now();
    if (overlaysShown) render(); // otherwise the overlays' frame draws it
  }

  // --- overlays ---------------------------------------------------------
  function setSegments(layer, data, z) {
    const xy = floatBuffer(data);
    const n = xy.length / 2;
    const pts = new Float32Array(n * 3);
    for (let i = 0; i < n; i++) { pts[3 * i] = xy[2 * i]; pts[3 * i + 1] = xy[2 * i + 1]; pts[3 * i + 2] = z; }
    const lines = new Uint32Array((n / 2) * 3);
    for (let s = 0; s < n / 2; s++) lines.set([2, 2 * s, 2 * s + 1], 3 * s);
    layer.polydata.getPoints().setData(pts, 3);
    layer.polydata.getLines().setData(lines);
    layer.polydata.modified();
  }

  // Octahedron markers: 6 points and 8 triangles each, coloured per marker.
  function setMarkers(layer, xyz, colourOf, size) {
    const n = xyz.length / 3;
    const pts = new Float32Array(n * 18), cells = new Uint32Array(n * 32), rgb = new Uint8Array(n * 24);
    const faces = [[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]];
    for (let i = 0; i < n; i++) {
      const x = xyz[3 * i], y = xyz[3 * i + 1], z = xyz[3 * i + 2] + size;
      pts.set([x + size, y, z, x - size, y, z, x, y + size, z, x, y - size, z, x, y, z + size, x, y, z - size], 18 * i);
      const colour = colourOf(i);
      for (let f = 0; f < 8; f++) {
        const [a, b, c] = faces[f];
        cells.set([3, 6 * i + a, 6 * i + b, 6 * i + c], 32 * i + 4 * f);
        rgb.set(colour, 24 * i + 3 * f);
      }
    }
    layer.polydata.getPoints().setData(pts, 3);
    layer.polydata.getPolys().setData(cells);
    layer.polydata.getCellData().setScalars(vtkDataArray.newInstance({ name: "colour", numberOfComponents: 3, values: rgb }));
    layer.polydata.modified();
    return n;
  }

  // Case markers: records [x, y, z, status] by slot; a status below 0 hides the marker (the case closed).
  // Drawn as dots at the case's place (the roof, or the ground), projected with the 3D view's camera.
  const CASE_RADIUS_PX = 5, PULSE_MS = 10000, MAX_PULSES = 300, LIVE_FRAME_MS = 150;
  let caseFrame = 0, pulseTimer = 0, lastCases = 0;
  let caseImage = null, casePixels = null, dotMask = [];
  const caseScreen = { x: new Float32Array(0), y: new Float32Array(0), n: 0 };
  function diskOffsets(radius) { // [dx, dy, isEdge, ...] of a disk with a one-pixel rim
    const out = [], r = Math.max(2, Math.round(radius));
    for (let dy = -r; dy <= r; dy++) for (let dx = -r; dx <= r; dx++) {
      const d = Math.hypot(dx, dy);
      if (d <= r + 0.5) out.push(dx, dy, d > r - 0.5 ? 1 : 0);
    }
    return out;
  }

  function projector() { // world (relative to the origin) -> CSS pixels in the view, or null behind the eye
    const cam = renderer.getActiveCamera();
    const pos = cam.getPosition(), fp = cam.getFocalPoint(), up = cam.getViewUp();
    const f = [fp[0] - pos[0], fp[1] - pos[1], fp[2] - pos[2]];
    const fl = Math.hypot(...f); f[0] /= fl; f[1] /= fl; f[2] /= fl;
    const r = [f[1] * up[2] - f[2] * up[1], f[2] * up[0] - f[0] * up[2], f[0] * up[1] - f[1] * up[0]];
    const rl = Math.hypot(...r); r[0] /= rl; r[1] /= rl; r[2] /= rl;
    const u = [r[1] * f[2] - r[2] * f[1], r[2] * f[0] - r[0] * f[2], r[0] * f[1] - r[1] * f[0]];
    const w = caseCanvas.clientWidth, h = caseCanvas.clientHeight;
    const k = (h / 2) / Math.tan((cam.getViewAngle() * Math.PI) / 360);
    const near = cam.getClippingRange()[0];
    return (x, y, z) => {
      const dx = x - pos[0], dy = y - pos[1], dz = z - pos[2];
      const depth = dx * f[0] + dy * f[1] + dz * f[2];
      if (depth <= near) return null;
      return [w / 2 + (k * (dx * r[0] + dy * r[1] + dz * r[2])) / depth,
              h / 2 - (k * (dx * u[0] + dy * u[1] + dz * u[2])) / depth];
    };
  }

  function drawCases() {
    caseFrame = 0;
    if (removed) return;
    lastCases = performance.now();
    const dpr = window.devicePixelRatio || 1;
    const w = caseCanvas.clientWidth, h = caseCanvas.clientHeight;
    if (caseCanvas.width !== Math.round(w * dpr) || caseCanvas.height !== Math.round(h * dpr)) {
      caseCanvas.width = Math.round(w * dpr); caseCanvas.height = Math.round(h * dpr);
    }
    const ctx = caseCanvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const recs = state.caseRec, n = recs.length;
    if (caseScreen.x.length < n) { caseScreen.x = new Float32Array(2 * n + 1024); caseScreen.y = new Float32Array(2 * n + 1024); }
    caseScreen.n = n;
    const visible = state.firstFrame && model.show_cases !== false;
    const project = projector(), now = performance.now();
    const byColour = new Map();
    for (let i = 0; i < n; i++) {
      caseScreen.x[i] = NaN;
      const [x, y, z, status] = recs[i];
      if (!visible || status < 0) continue;
      const p = project(x, y, z + 6);
      if (!p || p[0] < -10 || p[1] < -10 || p[0] > w + 10 || p[1] > h + 10) continue;
      caseScreen.x[i] = p[0]; caseScreen.y[i] = p[1];
      const c = status | 0;
      if (!byColour.has(c)) byColour.set(c, []);
      byColour.get(c).push(i);
    }
    // Dots are written straight into the pixels: tens of thousands of canvas calls would cost far more.
    if (!caseImage || caseImage.width !== caseCanvas.width || caseImage.height !== caseCanvas.height) {
      caseImage = ctx.createImageData(caseCanvas.width, caseCanvas.height);
      casePixels = new Uint32Array(caseImage.data.buffer);
      dotMask = diskOffsets(CASE_RADIUS_PX * dpr);
    }
    casePixels.fill(0);
    const W = caseCanvas.width, H = caseCanvas.height, edge = 0xff241710; // ABGR: the background, as an outline
    stampCameraGlyphs(project, w, h, dpr, W, H);
    for (const [c, idx] of byColour) {
      const [r, g, b] = STATUS_COLOURS[c] || STATUS_COLOURS[0];
      const colour = (0xff000000 | (b << 16) | (g << 8) | r) >>> 0;
      for (const i of idx) {
        const cx = Math.round(caseScreen.x[i] * dpr), cy = Math.round(caseScreen.y[i] * dpr);
        for (let k = 0; k < dotMask.length; k += 3) {
          const x = cx + dotMask[k], y = cy + dotMask[k + 1];
          if (x >= 0 && y >= 0 && x < W && y < H) casePixels[y * W + x] = dotMask[k + 2] ? edge : colour;
        }
      }
    }
    ctx.putImageData(caseImage, 0, 0);
    // New cases pulse for a while: a ring that grows and fades, twice a second (the newest few hundred).
    let pulsing = 0;
    ctx.lineWidth = 2.5;
    const fresh = [...state.caseFresh];
    for (let k = fresh.length - 1; k >= 0; k--) {
      const [slot, since] = fresh[k], age = now - since;
      if (age > PULSE_MS || !(slot < n) || recs[slot][3] < 0) { state.caseFresh.delete(slot); continue; }
      if (++pulsing > MAX_PULSES || Number.isNaN(caseScreen.x[slot])) continue;
      const phase = (age % 500) / 500;
      const [r, g, b] = STATUS_COLOURS[recs[slot][3] | 0] || STATUS_COLOURS[0];
      ctx.strokeStyle = `rgba(${r},${g},${b},${(1 - phase).toFixed(2)})`;
      ctx.beginPath();
      ctx.arc(caseScreen.x[slot], caseScreen.y[slot], CASE_RADIUS_PX + 3 + 12 * phase, 0, 2 * Math.PI);
      ctx.stroke();
    }
    drawWorkers(ctx, project, w, h);
    if (visible && state.pendingDrawn.length) { // when each new marker was first drawn, for tests and the bench
      probe.twinCaseDrawn = probe.twinCaseDrawn || {};
      for (const id of state.pendingDrawn) if (!(id in probe.twinCaseDrawn)) probe.twinCaseDrawn[id] = now;
      state.pendingDrawn = [];
    }
    clearTimeout(pulseTimer);
    pulseTimer = pulsing && visible ? setTimeout(queueCases, 100) : 0;
  }

  // Grid workers on patrol (the operator's screen): a square at their last position with their open load in it,
  // above the case dots; a few hundred at most, drawn with the canvas's own calls.
  const WORKER_HALF_PX = 8;
  const workerScreen = { x: new Float32Array(0), y: new Float32Array(0), n: 0 };
  function drawWorkers(ctx, project, w, h) {
    const rec = floatBuffer(model.workers), n = rec.length / 4;
    if (workerScreen.x.length < n) { workerScreen.x = new Float32Array(n); workerScreen.y = new Float32Array(n); }
    workerScreen.n = n;
    let drawn = 0;
    ctx.font = `bold 11px ${getComputedStyle(container).fontFamily || "sans-serif"}`;
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    for (let i = 0; i < n; i++) {
      workerScreen.x[i] = NaN;
      const p = state.firstFrame ? project(rec[4 * i], rec[4 * i + 1], rec[4 * i + 2]) : null;
      if (!p || p[0] < -10 || p[1] < -10 || p[0] > w + 10 || p[1] > h + 10) continue;
      workerScreen.x[i] = p[0]; workerScreen.y[i] = p[1];
      const s = WORKER_HALF_PX;
      ctx.fillStyle = "#f8fafc"; ctx.strokeStyle = "#0e7490"; ctx.lineWidth = 2.5;
      ctx.fillRect(p[0] - s, p[1] - s, 2 * s, 2 * s);
      ctx.strokeRect(p[0] - s, p[1] - s, 2 * s, 2 * s);
      ctx.fillStyle = "#0f1724";
      ctx.fillText(String(Math.round(rec[4 * i + 3])), p[0], p[1] + 0.5);
      drawn += 1;
    }
    probe.twinWorkersDrawn = drawn;
  }

  // Far away, the 3D cameras and cones are below a pixel: each camera is stamped as a small fan pointing
  // where it looks, of a fixed size on screen, in the dots' canvas (under the case dots).
  // A glyph is picked only near its core: at district zoom thousands of fans cover much of the view, and a
  // click there is meant for the building under them.
  const GLYPH_RADIUS_PX = 6, GLYPH_CORE_PX = 2, GLYPH_HALF_ANGLE = (40 * Math.PI) / 180, GLYPH_DIRECTIONS = 32;
  let glyphMasks = [], glyphDpr = 0;
  const camScreen = { x: new Float32Array(0), y: new Float32Array(0), n: 0 };
  function fanMasks(radius) { // per direction: [dx, dy, isCore, ...] of a fan (and a core dot) at that angle
    const r = Math.round(radius), masks = [];
    for (let k = 0; k < GLYPH_DIRECTIONS; k++) {
      const a = (2 * Math.PI * k) / GLYPH_DIRECTIONS, out = [];
      for (let dy = -r; dy <= r; dy++) for (let dx = -r; dx <= r; dx++) {
        const d = Math.hypot(dx, dy);
        const off = Math.abs(Math.atan2(Math.sin(Math.atan2(dy, dx) - a), Math.cos(Math.atan2(dy, dx) - a)));
        if (d <= GLYPH_CORE_PX * (radius / GLYPH_RADIUS_PX) + 0.5) out.push(dx, dy, 1);
        else if (d <= r + 0.5 && off <= GLYPH_HALF_ANGLE) out.push(dx, dy, 0);
      }
      masks.push(out);
    }
    return masks;
  }
  function camerasAsGlyphs() {
    return overlaysShown && !!model.show_cameras && state.cameraTotal > 0 && !conesWanted();
  }
  function stampCameraGlyphs(project, w, h, dpr, W, H) {
    camScreen.n = 0;
    if (!state.firstFrame || !camerasAsGlyphs()) return;
    if (glyphDpr !== dpr) { glyphMasks = fanMasks(GLYPH_RADIUS_PX * dpr); glyphDpr = dpr; }
    const rec = state.camRec, n = rec.length / 8;
    if (camScreen.x.length < n) { camScreen.x = new Float32Array(n); camScreen.y = new Float32Array(n); }
    camScreen.n = n;
    const ABGR = ([r, g, b]) => (0xff000000 | (b << 16) | (g << 8) | r) >>> 0;
    const core = [ABGR([56, 189, 248]), ABGR([100, 116, 139])], fan = [ABGR([30, 110, 150]), ABGR([62, 72, 88])];
    for (let i = 0; i < n; i++) {
      camScreen.x[i] = NaN;
      const x = rec[8 * i], y = rec[8 * i + 1], z = rec[8 * i + 2], h0 = (rec[8 * i + 3] * Math.PI) / 180;
      const p = project(x, y, z), q = project(x + 10 * Math.sin(h0), y + 10 * Math.cos(h0), z);
      if (!p || !q || p[0] < -10 || p[1] < -10 || p[0] > w + 10 || p[1] > h + 10) continue;
      camScreen.x[i] = p[0]; camScreen.y[i] = p[1];
      const angle = Math.atan2(q[1] - p[1], q[0] - p[0]);
      const mask = glyphMasks[((Math.round((angle / (2 * Math.PI)) * GLYPH_DIRECTIONS) % GLYPH_DIRECTIONS) +
                               GLYPH_DIRECTIONS) % GLYPH_DIRECTIONS];
      const online = rec[8 * i + 7] > 0 ? 0 : 1;
      const cx = Math.round(p[0] * dpr), cy = Math.round(p[1] * dpr);
      for (let k = 0; k < mask.length; k += 3) {
        const px = cx + mask[k], py = cy + mask[k + 1];
        if (px >= 0 && py >= 0 && px < W && py < H) casePixels[py * W + px] = mask[k + 2] ? core[online] : fan[online];
      }
    }
    probe.twinCameraGlyphs = n;
  }

  function queueCases() { // live changes redraw the dots a few times a second at most
    if (caseFrame) return;
    const wait = Math.max(0, lastCases + LIVE_FRAME_MS - performance.now());
    caseFrame = -1;
    setTimeout(() => { caseFrame = requestAnimationFrame(drawCases); }, wait);
  }

  function loadCases() {
    const rec = floatBuffer(model.cases); // x, y, z, status
    state.caseRec = [];
    for (let i = 0; i < rec.length / 4; i++) state.caseRec.push([rec[4 * i], rec[4 * i + 1], rec[4 * i + 2], rec[4 * i + 3]]);
    queueCases();
  }

  function nearestOnScreen(screen, radius, clientX, clientY) { // the nearest point within radius of the pointer
    const rect = caseCanvas.getBoundingClientRect();
    const px = clientX - rect.left, py = clientY - rect.top;
    let best = radius ** 2, index = -1;
    for (let i = 0; i < screen.n; i++) {
      const d = (screen.x[i] - px) ** 2 + (screen.y[i] - py) ** 2;
      if (d <= best) { best = d; index = i; }
    }
    return index;
  }

  function applyCaseUpdates() {
    const ab = asArrayBuffer(model.case_updates);
    if (!ab || ab.byteLength < 4) return;
    const n = new Uint32Array(ab, 0, 1)[0];
    const rec = new Float32Array(ab, 4, 6 * n); // slot, x, y, z, status, fresh
    const ids = new TextDecoder().decode(new Uint8Array(ab, 4 + 24 * n)).split("\n");
    const now = performance.now();
    for (let i = 0; i < n; i++) {
      const slot = rec[6 * i] | 0;
      for (let k = state.caseRec.length; k < slot; k++) state.caseRec[k] = [0, 0, 0, -1];
      state.caseRec[slot] = [rec[6 * i + 1], rec[6 * i + 2], rec[6 * i + 3], rec[6 * i + 4]];
      if (rec[6 * i + 5]) state.caseFresh.set(slot, now);
      if (model.probes) state.pendingDrawn.push(ids[i]);
    }
    queueCases();
  }

  // A city's cameras (model.cameras_near set, scenes/cameraserve.py) come from the server for a square of
  // CAMERAS_NEAR_M around where the view looks, fetched again once it looked a third of that away: a million
  // and a half cones would fill the browser's memory and every frame, and 47 MB each page the server's.
  // state.camIndex then holds each drawn camera's index in the server's layer, which a pick sends back.
  const CAMERAS_NEAR_M = 1500;
  const camFetch = { centre: null, seq: 0 };
  function followCameras() { // a city: the cameras near the focal point (in flight, where it lands) once moved
    if (!model.cameras_near) return;
    const fp = tiled.landing ? tiled.landing.fp : renderer.getActiveCamera().getFocalPoint(), c = camFetch.centre;
    if (c && Math.hypot(fp[0] - c[0], fp[1] - c[1]) < CAMERAS_NEAR_M / 3) return;
    camFetch.centre = [fp[0], fp[1]];
    const seq = ++camFetch.seq;
    const url = `${model.cameras_near}?x=${fp[0].toFixed(1)}&y=${fp[1].toFixed(1)}&r=${CAMERAS_NEAR_M}`;
    fetch(url).then((r) => { if (!r.ok) throw new Error(`${r.status}`); return r.arrayBuffer(); }).then((ab) => {
      if (removed || seq !== camFetch.seq) return;  // a later view's answer is coming
      const n = new Uint32Array(ab, 0, 1)[0];
      showCameras(new Float32Array(ab, 4, 8 * n), new Uint32Array(ab, 4 + 32 * n, n));
    }).catch((e) => { camFetch.centre = null; console.error(`cameras near ${url}: ${e}`); });
  }

  function loadCameras() {
    if (model.cameras_near) { camFetch.centre = null; followCameras(); return; }
    showCameras(floatBuffer(model.cameras), null); // x, y, z, heading, pitch, fov, range, online
  }

  function showCameras(rec, index) { // records of 8 floats, and their indices in the server's layer (null: 0..n)
    state.camRec = rec;
    state.camIndex = index;
    state.cameraTotal = rec.length / 8;
    probe.twinCameras = state.cameraTotal;
    makeCameraMarkers();
    if (overlaysShown) applyLayerVisibility(); else showOverlays();
  }
  const cameraIndex = (k) => (state.camIndex ? state.camIndex[k] : k);

  function makeCameraMarkers() { // the markers and cones of the cameras held
    const rec = state.camRec, n = rec.length / 8;
    const xyz = new Float32Array(n * 3);
    const apexAndCorners = new Float32Array(n * 5 * 3);
    for (let k = 0; k < n; k++) {
      const [x, y, z, heading, pitch, fov, range] = rec.subarray(8 * k, 8 * k + 7);
      xyz.set([x, y, z - 2.5], 3 * k);
      const h = (heading * Math.PI) / 180, p = (pitch * Math.PI) / 180, half = (fov * Math.PI) / 360;
      const corner = (dh, dp) => {
        const hh = h + dh, pp = p + dp;
        return [x + range * Math.cos(pp) * Math.sin(hh), y + range * Math.cos(pp) * Math.cos(hh),
                Math.max(0.2, z + range * Math.sin(pp))];
      };
      const c = [corner(-half, half * 0.6), corner(half, half * 0.6), corner(half, -half * 0.6), corner(-half, -half * 0.6)];
      apexAndCorners.set([x, y, z, ...c[0], ...c[1], ...c[2], ...c[3]], 15 * k);
    }
    state.cameraCount = setMarkers(cameras, xyz, (k) => (rec[8 * k + 7] > 0 ? [56, 189, 248] : [100, 116, 139]), 2.5);
    const faces = new Uint32Array(n * 4 * 4); // the pyramid's four sides: apex and two neighbouring corners
    for (let i = 0; i < n; i++) {
      for (let k = 0; k < 4; k++) faces.set([3, 5 * i, 5 * i + 1 + k, 5 * i + 1 + ((k + 1) % 4)], 16 * i + 4 * k);
    }
    cones.polydata.getPoints().setData(apexAndCorners, 3);
    cones.polydata.getPolys().setData(faces);
    cones.polydata.modified();
  }

  // Level of detail: 18,000 view cones only read when close, so far away cameras are just markers.
  const CONE_DISTANCE_M = 900;
  function conesWanted() {
    const cam = renderer.getActiveCamera();
    const d = Math.hypot(...cam.getPosition().map((v, k) => v - cam.getFocalPoint()[k]));
    return !!model.show_cameras && d < CONE_DISTANCE_M;
  }

  function applyLayerVisibility() {
    if (!overlaysShown) return;
    cameras.actor.setVisibility(!!model.show_cameras);
    cones.actor.setVisibility(conesWanted());
    queueCases();
    if (!tiled.landing) render();  // in flight, every frame is drawn anyway (a second one would halve its rate)
  }

  // --- labels and legend ------------------------------------------------
  const LABEL_CHAR_PX = 11;  // a CJK character at the labels' 11 px (Latin ones are narrower: a safe overestimate)
  const LABELS_SHOWN_AT_MOST = 400, LABEL_CELL_PX = 64;
  function placeLabels() {
    const labels = model.labels || [];
    const dpr = window.devicePixelRatio || 1;
    const [w, h] = glWindow.getSize();
    const W = w / dpr, H = h / dpr;
    // Larger grids come first; a label that would overlap one already placed is left out (screen space, looked up
    // in cells of the screen). Only the labels shown have an element: a city has 32,400 grids.
    const placed = [], cells = new Map();
    const cellsOf = (b) => {
      const out = [];
      for (let i = Math.floor((b[0] - b[2]) / LABEL_CELL_PX); i <= Math.floor((b[0] + b[2]) / LABEL_CELL_PX); i++)
        for (let j = Math.floor((b[1] - b[3]) / LABEL_CELL_PX); j <= Math.floor((b[1] + b[3]) / LABEL_CELL_PX); j++)
          out.push(`${i},${j}`);
      return out;
    };
    for (const [text, x, y] of labels) {
      if (placed.length >= LABELS_SHOWN_AT_MOST) break;
      const p = glWindow.worldToDisplay(x, y, 1, renderer);
      if (!(p[2] > 0 && p[2] < 1)) continue;
      const b = [p[0] / dpr, (h - p[1]) / dpr, 0.5 * LABEL_CHAR_PX * text.length + 2, 8, text];
      if (b[0] + b[2] < 0 || b[1] + b[3] < 0 || b[0] - b[2] > W || b[1] - b[3] > H) continue;
      const keys = cellsOf(b);
      const free = !keys.some((k) => (cells.get(k) || []).some(
        (o) => Math.abs(o[0] - b[0]) < o[2] + b[2] && Math.abs(o[1] - b[1]) < o[3] + b[3]));
      if (!free) continue;
      placed.push(b);
      for (const k of keys) { if (!cells.has(k)) cells.set(k, []); cells.get(k).push(b); }
    }
    while (labelLayer.childElementCount < placed.length) {
      const d = document.createElement("div");
      d.className = "twin-label";
      d.style.cssText = "position:absolute;transform:translate(-50%,-50%);color:#e6edf7;font-size:11px;" +
        "text-shadow:0 0 3px #000,0 0 2px #000;white-space:nowrap;";
      labelLayer.appendChild(d);
    }
    while (labelLayer.childElementCount > placed.length) labelLayer.lastChild.remove();
    labelLayer.dataset.given = labels.length;  // how many there are, shown or not
    placed.forEach(([left, top, , , text], i) => {
      const d = labelLayer.children[i];
      if (d.textContent !== text) d.textContent = text;
      d.style.left = `${left}px`;
      d.style.top = `${top}px`;
    });
  }
  // --- the party layer ----------------------------------------------------
  const PARTY_MARK_PX = 14;
  function placeParty() {
    const marks = model.party || [];
    partyLayer.style.display = model.show_party ? "block" : "none";
    if (!model.show_party) { probe.twinPartyMarks = 0; return; }
    while (partyLayer.childElementCount < marks.length) {
      const d = document.createElement("div"), i = partyLayer.childElementCount;
      d.className = "twin-party-mark";
      d.setAttribute("role", "button");
      d.textContent = "★";
      d.style.cssText = `position:absolute;width:${PARTY_MARK_PX}px;height:${PARTY_MARK_PX}px;border-radius:50%;` +
        "transform:translate(-50%,-50%);border:1.5px solid #fff;color:#fff;font-size:9px;line-height:" +
        `${PARTY_MARK_PX - 3}px;text-align:center;cursor:pointer;pointer-events:auto;box-shadow:0 0 3px #000;`;
      d.addEventListener("click", (e) => {
        e.stopPropagation();
        state.clickSeq += 1;
        model.pick = { kind: "party", index: i, seq: state.clickSeq };
      });
      partyLayer.appendChild(d);
    }
    while (partyLayer.childElementCount > marks.length) partyLayer.lastChild.remove();
    const dpr = window.devicePixelRatio || 1;
    const [, h] = glWindow.getSize();
    let shown = 0;
    marks.forEach(([text, x, y, z, kind], i) => {
      const d = partyLayer.children[i];
      const p = glWindow.worldToDisplay(x, y, z, renderer);
      const on = p[2] > 0 && p[2] < 1;
      if (d.title !== text) d.title = text;
      d.style.background = PARTY_COLOURS[kind] || PARTY_COLOURS[2];
      d.style.left = `${p[0] / dpr}px`;
      d.style.top = `${(h - p[1]) / dpr}px`;
      d.style.display = on ? "block" : "none";
      shown += on ? 1 : 0;
    });
    probe.twinPartyMarks = shown;
  }

  function setSegments3(layer, data) { // float32 (x0, y0, z0, x1, y1, z1) per segment
    const pts = floatBuffer(data), n = pts.length / 3;
    const lines = new Uint32Array((n / 2) * 3);
    for (let s = 0; s < n / 2; s++) lines.set([2, 2 * s, 2 * s + 1], 3 * s);
    layer.polydata.getPoints().setData(pts, 3);
    layer.polydata.getLines().setData(lines);
    layer.polydata.modified();
  }

  function showParty() {
    partyOutline.actor.setVisibility(!!model.show_party && floatBuffer(model.party_highlight).length > 0);
    placeParty();
    drawMarkerLegend();
    render();
  }

  let labelFrame = 0;
  const cameraWatch = renderer.getActiveCamera().onModified(() => {
    if (!labelFrame) labelFrame = requestAnimationFrame(() => {
      labelFrame = 0;
      if (removed) return;
      placeLabels();
      placeParty();
      if (overlaysShown) followCameras();
      drawCases();
      if (overlaysShown && cones.actor.getVisibility() !== conesWanted()) {
        cones.actor.setVisibility(conesWanted());
        render();
      }
    });
  });

  const OPEN_STATUS_SLOTS = [[0, "Reported"], [1, "Dispatched"], [2, "In progress"], [7, "Reopened"], [8, "Accepted"],
                             [9, "On site"], [10, "Handed up"]];
  function drawMarkerLegend() {
    const swatch = (rgb, round) => `<span style="display:inline-block;width:10px;height:10px;margin-right:6px;` +
      `vertical-align:middle;background:rgb(${rgb});border-radius:${round ? "50%" : "0"}"></span>`;
    const names = { Reported: _("Reported"), Dispatched: _("Dispatched"), "In progress": _("In progress"),
                    Reopened: _("Reopened"), Accepted: _("Accepted"), "On site": _("On site"),
                    "Handed up": _("Handed up") };
    const casesTitle = _("Open cases"), camerasTitle = _("Cameras"), online = _("online"), offline = _("offline");
    const cone = _("field of view (near)");
    const cases = model.show_cases === false ? "" :
      `<div style="font-weight:600;margin-bottom:2px">${casesTitle}</div>` + OPEN_STATUS_SLOTS.map(([k, name]) =>
        `<div class="twin-marker-status">${swatch(STATUS_COLOURS[k], true)}${names[name]}</div>`).join("");
    const cams = !model.show_cameras ? "" :
      `<div style="font-weight:600;margin:4px 0 2px">${camerasTitle}</div>` +
      `<div>${swatch([56, 189, 248], false)}${online}</div><div>${swatch([100, 116, 139], false)}${offline}</div>` +
      `<div><span style="display:inline-block;width:0;height:0;border-left:5px solid transparent;` +
      `border-right:5px solid transparent;border-bottom:10px solid rgba(56,189,248,0.45);` +
      `margin-right:6px;vertical-align:middle"></span>${cone}</div>`;
    const kinds = [_("Party committee"), _("General party branch"), _("Party branch"), _("Joint party branch"),
                   _("Party group")];
    const partyTitle = _("Party organisations"), covers = _("buildings the picked one covers");
    const party = !model.show_party ? "" :
      `<div class="twin-party-legend"><div style="font-weight:600;margin:4px 0 2px">${partyTitle}</div>` +
      kinds.map((name, k) => `<div class="twin-party-kind">` +
        `${swatch(PARTY_COLOURS[k].match(/\w\w/g).map((c) => parseInt(c, 16)), true)}${name}</div>`).join("") +
      `<div><span style="display:inline-block;width:10px;height:0;border-top:3px solid rgb(${PARTY_OUTLINE.map(
        (c) => Math.round(255 * c))});margin-right:6px;vertical-align:middle"></span>` +
      `${covers}</div></div>`;
    const workersTitle = _("Grid workers on patrol"), load = _("number: their open cases");
    const workers = !(model.worker_names || []).length ? "" :
      `<div style="font-weight:600;margin:4px 0 2px">${workersTitle}</div><div>` +
      `<span style="display:inline-block;width:10px;height:10px;margin-right:6px;vertical-align:middle;` +
      `background:#f8fafc;border:2px solid #0e7490"></span>${load}</div>`;
    markerLegend.innerHTML = cases + cams + party + workers;
    markerLegend.style.display = cases || cams || party || workers ? "block" : "none";
  }

  function drawLegend() {
    const l = model.legend || {};
    const items = (l.items || []).map(([colour, text]) =>
      `<div><span style="display:inline-block;width:12px;height:12px;background:${colour};margin-right:6px;` +
      `vertical-align:middle"></span>${text}</div>`).join("");
    legend.innerHTML = l.title ? `<div style="font-weight:600;margin-bottom:4px">${l.title}</div>${items}` : "";
  }

  // --- camera -------------------------------------------------------------
  function clampCamera() {
    const b = state.bounds, layer = state.layer;
    if (!b || !(layer || tiled.root)) return;
    const cam = renderer.getActiveCamera();
    const fp = cam.getFocalPoint(), pos = cam.getPosition();
    const span = Math.max(b[3] - b[0], b[4] - b[1], 100);
    const cfp = [Math.min(Math.max(fp[0], b[0] - 0.25 * span), b[3] + 0.25 * span),
                 Math.min(Math.max(fp[1], b[1] - 0.25 * span), b[4] + 0.25 * span), 0];
    let dir = [pos[0] - fp[0], pos[1] - fp[1], pos[2] - fp[2]];
    let dist = Math.hypot(...dir) || 1;
    const clamped = Math.min(Math.max(dist, 25), 3 * span);
    dir = dir.map((d) => (d / dist) * clamped);
    const npos = [cfp[0] + dir[0], cfp[1] + dir[1], Math.max(cfp[2] + dir[2], 5)];
    // Never inside a building: lift the eye above the roof of any building around it.
    const boxes = layer ? [[layer.bbox, layer.nb]] : [...tiled.drawn].map((n) => tiled.loaded.get(n))
      .filter(Boolean).map((t) => [t.featBox, t.nf]);
    for (const [bbox, count] of boxes) {
      for (let i = 0; i < count; i++) {
        const o = 6 * i;
        if (npos[0] > bbox[o] - 2 && npos[0] < bbox[o + 3] + 2 && npos[1] > bbox[o + 1] - 2 &&
            npos[1] < bbox[o + 4] + 2 && npos[2] < bbox[o + 5] + 5) npos[2] = bbox[o + 5] + 5;
      }
    }
    const moved = Math.hypot(npos[0] - pos[0], npos[1] - pos[1], npos[2] - pos[2]) > 1e-3 ||
                  Math.hypot(cfp[0] - fp[0], cfp[1] - fp[1]) > 1e-3;
    if (moved) { cam.setFocalPoint(...cfp); cam.setPosition(...npos); cam.setViewUp(0, 0, 1); }
    renderer.resetCameraClippingRange();
    return moved;
  }
  interactor.onEndAnimation(() => { if (clampCamera() || tiled.root) render(); });  // render picks the tiles too

  function viewAround(cx, cy, cz, radius, mode) {
    const d = Math.max(radius * 2.6, 60);
    if (mode === "top") return { fp: [cx, cy, cz], pos: [cx, cy + 0.001, cz + d * 1.2], up: [0, 1, 0] };
    return { fp: [cx, cy, cz], pos: [cx + 0.35 * d, cy - 0.8 * d, cz + 0.65 * d], up: [0, 0, 1] };
  }

  let flight = 0;
  function flyTo(target, animate = true) {
    const cam = renderer.getActiveCamera();
    const from = { fp: cam.getFocalPoint(), pos: cam.getPosition(), up: cam.getViewUp() };
    cancelAnimationFrame(flight);
    clearTimeout(pulseTimer);
    if (caseFrame > 0) cancelAnimationFrame(caseFrame);
    const finish = () => { tiled.landing = null;
                           cam.setFocalPoint(...target.fp); cam.setPosition(...target.pos); cam.setViewUp(...target.up);
                           renderer.resetCameraClippingRange(); clampCamera();
                           updateTiles(); render();  // the tiles fetched in flight are in the landing's first frame
                           probe.twinFlightEnd = performance.now(); };
    if (!animate) return finish();
    // The tiles where it lands are fetched during the flight: for the camera as finish() leaves it (clamped).
    cam.setFocalPoint(...target.fp); cam.setPosition(...target.pos); cam.setViewUp(...target.up);
    clampCamera();
    tiled.landing = { fp: cam.getFocalPoint(), pos: cam.getPosition() };
    cam.setFocalPoint(...from.fp); cam.setPosition(...from.pos); cam.setViewUp(...from.up);
    renderer.resetCameraClippingRange();
    updateTiles();
    const t0 = performance.now(), ms = 650;
    const step = (now) => {
      const t = Math.min(1, (now - t0) / ms), e = t < 0.5 ? 2 * t * t : 1 - Math.pow(-2 * t + 2, 2) / 2;
      const mix = (a, b) => a.map((v, k) => v + (b[k] - v) * e);
      cam.setFocalPoint(...mix(from.fp, target.fp)); cam.setPosition(...mix(from.pos, target.pos));
      cam.setViewUp(...mix(from.up, target.up));
      renderer.resetCameraClippingRange(); renderWindow.render();
      if (t < 1) flight = requestAnimationFrame(step); else finish();
    };
    flight = requestAnimationFrame(step);
  }

  function setView(name, animate = true) {
    const b = state.bounds;
    if (!b) return;
    const cx = (b[0] + b[3]) / 2, cy = (b[1] + b[4]) / 2;
    const r = 0.5 * Math.max(b[3] - b[0], b[4] - b[1]);
    flyTo(viewAround(cx, cy, 0, 1.3 * r, name === "top" ? "top" : "oblique"), animate);
  }

  // --- picking ------------------------------------------------------------
  // A ray from the eye through the pixel, tested on the CPU: each building's box first, then the
  // triangles of the buildings whose boxes it crosses, nearest first. The GPU hardware selector
  // renders the whole scene once per selection pass, which software GL (SwiftShader) makes cost
  // 600-900 ms a click on the full district; this costs a millisecond or two.
  function eyeRay(clientX, clientY) {
    const rect = canvasHolder.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    const x = (clientX - rect.left) * dpr, y = (rect.height - (clientY - rect.top)) * dpr;
    const near = glWindow.displayToWorld(x, y, 0, renderer), far = glWindow.displayToWorld(x, y, 1, renderer);
    const d = [far[0] - near[0], far[1] - near[1], far[2] - near[2]];
    const len = Math.hypot(...d);
    return { o: near, d: d.map((v) => v / len) };
  }

  function rayBox(o, inv, b, off) {
    let t0 = 0, t1 = Infinity;
    for (let k = 0; k < 3; k++) {
      let a = (b[off + k] - o[k]) * inv[k], c = (b[off + 3 + k] - o[k]) * inv[k];
      if (a > c) [a, c] = [c, a];
      t0 = Math.max(t0, a); t1 = Math.min(t1, c);
      if (t0 > t1) return Infinity;
    }
    return t0;
  }

  function rayTriangle(o, d, p, i0, i1, i2) { // Möller–Trumbore, two-sided
    const e1 = [p[3 * i1] - p[3 * i0], p[3 * i1 + 1] - p[3 * i0 + 1], p[3 * i1 + 2] - p[3 * i0 + 2]];
    const e2 = [p[3 * i2] - p[3 * i0], p[3 * i2 + 1] - p[3 * i0 + 1], p[3 * i2 + 2] - p[3 * i0 + 2]];
    const q = [d[1] * e2[2] - d[2] * e2[1], d[2] * e2[0] - d[0] * e2[2], d[0] * e2[1] - d[1] * e2[0]];
    const det = e1[0] * q[0] + e1[1] * q[1] + e1[2] * q[2];
    if (Math.abs(det) < 1e-12) return Infinity;
    const s = [o[0] - p[3 * i0], o[1] - p[3 * i0 + 1], o[2] - p[3 * i0 + 2]];
    const u = (s[0] * q[0] + s[1] * q[1] + s[2] * q[2]) / det;
    if (u < 0 || u > 1) return Infinity;
    const r = [s[1] * e1[2] - s[2] * e1[1], s[2] * e1[0] - s[0] * e1[2], s[0] * e1[1] - s[1] * e1[0]];
    const v = (d[0] * r[0] + d[1] * r[1] + d[2] * r[2]) / det;
    if (v < 0 || u + v > 1) return Infinity;
    const t = (e2[0] * r[0] + e2[1] * r[1] + e2[2] * r[2]) / det;
    return t > 0 ? t : Infinity;
  }

  function rayMarkers(o, d, layer, count, radius) { // nearest marker whose centre passes within radius
    const pts = layer.polydata.getPoints().getData();
    let best = Infinity, index = -1;
    for (let i = 0; i < count; i++) {
      // Octahedron i: vertex 0 is (x + s, y, z), vertex 2 is (x, y + s, z); so its centre is:
      const c = [pts[18 * i + 6], pts[18 * i + 1], pts[18 * i + 2]];
      const w = [c[0] - o[0], c[1] - o[1], c[2] - o[2]];
      const t = w[0] * d[0] + w[1] * d[1] + w[2] * d[2];
      if (t <= 0) continue;
      const miss = Math.hypot(w[0] - t * d[0], w[1] - t * d[1], w[2] - t * d[2]);
      if (miss <= radius && t < best) { best = t; index = i; }
    }
    return { t: best, index };
  }

  // The drawn tiles: their features' boxes first, then the triangles of those the ray crosses, nearest first.
  function pickTiles(o, d, inv, best) {
    const candidates = [];
    for (const node of tiled.drawn) {
      const tile = tiled.loaded.get(node);
      if (!tile || rayBox(o, inv, node.box, 0) === Infinity) continue;
      for (let f = 0; f < tile.nf; f++) {
        const t = rayBox(o, inv, tile.featBox, 6 * f);
        if (t < Infinity) candidates.push([t, tile, f]);
      }
    }
    candidates.sort((a, b) => a[0] - b[0]);
    let hit = null;
    for (const [tBox, tile, f] of candidates) {
      if (tBox > best) break;
      const p = tile.points, cells = tile.cells;
      for (let c = tile.featStart[f]; c < tile.featStart[f + 1]; c++) {
        const t = rayTriangle(o, d, p, cells[4 * c + 1], cells[4 * c + 2], cells[4 * c + 3]);
        if (t < best && tile.ids[f] !== 0xFFFFFFFF) {
          const element = tile.elements ? tile.elements[c] : 0xFFFFFFFF;
          best = t;
          hit = tile.stands && tile.stands[f] > 1 ? { t, block: tile.featBox.slice(6 * f, 6 * f + 6) }
            : { t, index: tile.ids[f], element: element === 0xFFFFFFFF ? -1 : element };
        }
      }
    }
    return hit;
  }

  function pickAt(clientX, clientY) {
    const started = performance.now();
    const { o, d } = eyeRay(clientX, clientY);
    const inv = d.map((v) => 1 / v);
    let hit = null, best = Infinity;
    const layer = state.layer;
    if (layer && buildings.actor.getVisibility()) {
      const candidates = [];
      for (let b = 0; b < layer.nb; b++) {
        const t = rayBox(o, inv, layer.bbox, 6 * b);
        if (t < Infinity) candidates.push([t, b]);
      }
      candidates.sort((a, b) => a[0] - b[0]);
      const p = layer.points, cells = layer.cells;
      for (const [tBox, b] of candidates) {
        if (tBox > best) break;
        for (let c = layer.cellStart[b]; c < layer.cellStart[b + 1]; c++) {
          const t = rayTriangle(o, d, p, cells[4 * c + 1], cells[4 * c + 2], cells[4 * c + 3]);
          if (t < best) { best = t; hit = { kind: "building", index: b, element: layer.cellElement[c] }; }
        }
      }
    }
    const tileHit = pickTiles(o, d, inv, best);
    if (tileHit) {
      best = tileHit.t;
      hit = tileHit.block ? { kind: "block", index: -1, box: tileHit.block }
        : { kind: "building", index: tileHit.index, element: tileHit.element };
    }
    if (cameras.actor.getVisibility() && state.cameraCount) {
      const m = rayMarkers(o, d, cameras, state.cameraCount, 4);
      if (m.t < best) { best = m.t; hit = { kind: "camera", index: cameraIndex(m.index) }; }
      // A glyph is drawn on top but a building under it wins: cameras are mounted on buildings, and at
      // district zoom a click there is meant for the building (zoomed in, the 3D marker is picked by depth).
      const g = camerasAsGlyphs() && !(hit && hit.kind === "building")
        ? nearestOnScreen(camScreen, GLYPH_CORE_PX + 1, clientX, clientY) : -1;
      if (g >= 0) hit = { kind: "camera", index: cameraIndex(g) };
    }
    // dots lie on top of everything
    const c = model.show_cases !== false ? nearestOnScreen(caseScreen, CASE_RADIUS_PX + 3, clientX, clientY) : -1;
    if (c >= 0) hit = { kind: "case", index: c };
    const worker = nearestOnScreen(workerScreen, WORKER_HALF_PX + 2, clientX, clientY);
    if (worker >= 0) hit = { kind: "worker", index: worker };
    if (!hit && d[2] < 0) {  // open ground: where the ray meets z = 0, for the grid there
      const t = -o[2] / d[2];
      hit = { kind: "ground", index: -1, x: o[0] + t * d[0], y: o[1] + t * d[1] };
    }
    probe.twinPickMs = performance.now() - started;
    return hit;
  }

  // Clicks never reach vtk.js's interactor, which renders on every button press and release; a press
  // is handed to it only once the pointer has moved, as a drag (orbit, pan) begins.
  let down = null, forwarding = false;
  canvasHolder.addEventListener("pointerdown", (e) => {
    if (forwarding) return;
    down = { x: e.clientX, y: e.clientY, event: e, handedOver: false };
    e.stopImmediatePropagation();
  }, true);
  canvasHolder.addEventListener("pointermove", (e) => {
    if (!down || down.handedOver || forwarding) return;
    if (Math.hypot(e.clientX - down.x, e.clientY - down.y) <= 4) { e.stopImmediatePropagation(); return; }
    down.handedOver = true;
    forwarding = true;
    down.event.target.dispatchEvent(new PointerEvent("pointerdown", down.event));
    forwarding = false;
  }, true);
  canvasHolder.addEventListener("pointerup", (e) => {
    if (!down || forwarding) return;
    const wasDrag = down.handedOver;
    down = null;
    if (wasDrag) return;
    e.stopImmediatePropagation();
    probe.twinLastClick = performance.now();
    const hit = pickAt(e.clientX, e.clientY);
    if (hit && hit.kind === "block") {  // a block of a coarse tile: close enough, its buildings answer clicks
      const b = hit.box;
      flyTo(viewAround((b[0] + b[3]) / 2, (b[1] + b[4]) / 2, (b[2] + b[5]) / 2,
                       0.5 * Math.hypot(b[3] - b[0], b[4] - b[1]), "oblique"));
      return;
    }
    state.clickSeq += 1;
    model.pick = hit ? { ...hit, seq: state.clickSeq } : { kind: "none", index: -1, seq: state.clickSeq };
  }, true);
  let hoverTimer = 0, lastHover = -2;
  canvasHolder.addEventListener("pointermove", (e) => {
    const rect = container.getBoundingClientRect();
    tooltip.style.left = `${e.clientX - rect.left + 14}px`;
    tooltip.style.top = `${e.clientY - rect.top + 10}px`;
    if (e.buttons) return;
    clearTimeout(hoverTimer);
    hoverTimer = setTimeout(() => {
      const hit = pickAt(e.clientX, e.clientY);
      const index = hit && hit.kind === "building" ? hit.index : -1;
      if (index !== lastHover) { lastHover = index; model.hovered = index; }
    }, 120);
  });
  canvasHolder.addEventListener("pointerleave", () => { lastHover = -1; model.hovered = -1; });

  // Where a world point lands on screen (CSS pixels in the page), for tests and tools.
  container.worldToPage = (x, y, z) => {
    const p = glWindow.worldToDisplay(x, y, z, renderer);
    const rect = canvasHolder.getBoundingClientRect(), dpr = window.devicePixelRatio || 1;
    return [rect.left + p[0] / dpr, rect.top + rect.height - p[1] / dpr];
  };
  probe.twinView = container;

  // --- wiring -------------------------------------------------------------
  model.on("buildings", loadBuildings);
  model.on("models", () => { if (state.layer) loadBuildings(); });
  model.on("colors", () => { rgbOfBuildings = null; applyColours(); });
  model.on("selected", applyColours);
  model.on("grid_lines", () => { setSegments(gridLines, model.grid_lines, 0.4); render(); });
  model.on("grid_highlight", () => { setSegments(gridHighlight, model.grid_highlight, 0.6); render(); });
  model.on("labels", placeLabels);
  model.on("legend", drawLegend);
  model.on("cases", loadCases);
  model.on("case_updates", applyCaseUpdates);
  model.on("cameras", loadCameras);
  model.on("cameras_near", loadCameras);
  model.on("workers", queueCases);
  model.on("worker_names", drawMarkerLegend);
  model.on("basemap", loadBasemap);
  model.on("show_cameras", () => { applyLayerVisibility(); drawMarkerLegend(); });
  model.on("show_cases", () => { applyLayerVisibility(); drawMarkerLegend(); });
  model.on("party", placeParty);
  model.on("show_party", showParty);
  model.on("party_highlight", () => { setSegments3(partyOutline, model.party_highlight); showParty(); });
  model.on("tooltip", () => {
    tooltip.textContent = model.tooltip || "";
    tooltip.style.display = model.tooltip && model.hovered >= 0 ? "block" : "none";
  });
  model.on("fly_to", () => {
    const f = model.fly_to || {};
    if (f.view) setView(f.view);
    else if (f.pos) flyTo({ fp: f.fp, pos: f.pos, up: [0, 0, 1] });
    else if (f.x !== undefined) flyTo(viewAround(f.x, f.y, f.z || 0, f.r || 50, f.mode || "oblique"));
  });

  // Panel's layout passes and the ResizeObserver's first call often leave the size as it was: a redraw
  // then would cost a whole software-GL frame for nothing.
  let drawnSize = "";
  const resize = () => {
    if (removed) return;
    const size = `${container.clientWidth}x${container.clientHeight}`;
    if (size === drawnSize) return;
    drawnSize = size;
    grw.resize(); placeLabels(); placeParty(); queueCases(); render();
  };
  model.on("resize", resize);
  let started = false;
  model.on("after_layout", () => {
    if (started) { resize(); return; }
    started = true;
    drawnSize = `${container.clientWidth}x${container.clientHeight}`;
    grw.resize();
    loadBuildings();
    loadTileset().catch((e) => console.error(`tileset ${model.tileset}: ${e}`));
    setSegments(gridLines, model.grid_lines, 0.4);
    setSegments(gridHighlight, model.grid_highlight, 0.6);
    loadCases();
    loadBasemap();
    loadCameras();
    setSegments3(partyOutline, model.party_highlight);
    drawLegend();
    drawMarkerLegend();
    placeLabels();
    showParty();
  });
  const observer = new ResizeObserver(() => resize());
  observer.observe(container);
  model.on("remove", () => {
    removed = true;
    cancelAnimationFrame(labelFrame);
    cancelAnimationFrame(flight);
    clearTimeout(pulseTimer);
    clearTimeout(overlaysTimer);
    if (caseFrame > 0) cancelAnimationFrame(caseFrame);
    cameraWatch.unsubscribe();
    observer.disconnect();
    grw.delete();
  });
}

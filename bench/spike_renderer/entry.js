// The spike's three.js page: the exported tileset drawn by NASA-AMMOS' 3d-tiles-renderer (3D BAG's viewer),
// with the camera the app's overview uses, so its first frame can be set beside our vtk.js view's.
import * as THREE from "three";
import { TilesRenderer } from "3d-tiles-renderer";

const marks = (window.twinMarks = { start: performance.now() });
const renderer = new THREE.WebGLRenderer({ antialias: false });
renderer.setPixelRatio(1);
renderer.setSize(window.innerWidth, window.innerHeight);
renderer.setClearColor(0x0f1724);
document.body.appendChild(renderer.domElement);
const scene = new THREE.Scene();
scene.add(new THREE.AmbientLight(0xffffff, 0.8));
const sun = new THREE.DirectionalLight(0xffffff, 1.6);
sun.position.set(0.35, 1.0, 0.55);
scene.add(sun);
const camera = new THREE.PerspectiveCamera(30, window.innerWidth / window.innerHeight, 1, 100000);

const tiles = new TilesRenderer(new URL("tileset/tileset.json", window.location.href).href);
tiles.errorTarget = 16;
tiles.setCamera(camera);
tiles.setResolutionFromRenderer(camera, renderer);
scene.add(tiles.group);
tiles.addEventListener("load-root-tileset", ({ tileset }) => {
  // The root's transform puts the district in ECEF; undo it, and turn ENU's z up into three's y up.
  const root = tileset.root;
  const m = new THREE.Matrix4().fromArray(root.transform).invert();
  const zUpToYUp = new THREE.Matrix4().makeRotationX(-Math.PI / 2);
  tiles.group.matrixAutoUpdate = false;
  tiles.group.matrix.copy(zUpToYUp.multiply(m));
  tiles.group.updateMatrixWorld(true);
  const box = root.boundingVolume.box;  // centre and half axes in ENU
  const r = 1.3 * Math.max(Math.abs(box[3]), Math.abs(box[7]));
  const d = Math.max(2.6 * r, 60);
  // the app's oblique overview: eye at (0.35 d, -0.8 d, 0.65 d) from the centre, in ENU
  camera.position.set(box[0] + 0.35 * d, box[2] + 0.65 * d, -(box[1] - 0.8 * d));
  camera.lookAt(box[0], box[2], -box[1]);
  marks.tileset = performance.now();
});
let loaded = 0;
tiles.addEventListener("load-model", () => { loaded += 1; window.twinTilesLoaded = loaded; });
function frame() {
  camera.updateMatrixWorld();
  tiles.update();
  renderer.render(scene, camera);
  if (loaded && !marks.firstTile) marks.firstTile = performance.now();
  requestAnimationFrame(frame);
}
frame();

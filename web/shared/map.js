// A small live map drawn from coordinates: Leaflet with no tile layer unless the server names a
// tile server (HAVEN_MAP_TILE_URL, served at /web/config). Points are labelled in text, not only
// by colour.
import { html } from "htm/preact";
import { useEffect, useRef } from "preact/hooks";
import L from "leaflet";
import "leaflet/dist/leaflet.css";

let config;
/** The server's page configuration (`GET /web/config`), fetched once. */
export function webConfig() {
  config ??= fetch("/web/config").then((r) => r.json()).catch(() => ({ tileUrl: "", tileAttribution: "" }));
  return config;
}

const STYLE = {
  patient: { color: "#b00020", label: "Patient" },
  first_aider: { color: "#1b7f3b", label: "First-aider" },
  ambulance: { color: "#0b57d0", label: "Ambulance" },
  hospital: { color: "#5b2a86", label: "Hospital" },
};

/** `points`: [{ kind: patient|first_aider|ambulance|hospital, lat, lng, label? }]. */
export function LiveMap({ points, height = 220, labels = true }) {
  const el = useRef(null);
  const map = useRef(null);
  const layer = useRef(null);
  const fitted = useRef("");

  useEffect(() => {
    const m = L.map(el.current, { zoomControl: false, attributionControl: true, keyboard: false, scrollWheelZoom: false });
    m.setView([-1.286, 36.817], 13);
    L.control.scale({ imperial: false }).addTo(m);
    layer.current = L.layerGroup().addTo(m);
    map.current = m;
    void webConfig().then((c) => {
      if (c.tileUrl && map.current) L.tileLayer(c.tileUrl, { attribution: c.tileAttribution, maxZoom: 19 }).addTo(map.current);
    });
    return () => { m.remove(); map.current = null; };
  }, []);

  useEffect(() => {
    const m = map.current;
    if (!m) return;
    const valid = points.filter((p) => Number.isFinite(p.lat) && Number.isFinite(p.lng) && (p.lat !== 0 || p.lng !== 0));
    layer.current.clearLayers();
    for (const p of valid) {
      const s = STYLE[p.kind] ?? STYLE.patient;
      L.circleMarker([p.lat, p.lng], { radius: p.kind === "hospital" ? 9 : 7, color: s.color, fillColor: s.color, fillOpacity: 0.85, weight: 2 })
        .bindTooltip(p.label ?? s.label, { permanent: labels, direction: "right", className: `map-label map-${p.kind}` })
        .addTo(layer.current);
    }
    const patient = valid.find((p) => p.kind === "patient");
    const hospital = valid.find((p) => p.kind === "hospital");
    if (patient && hospital) L.polyline([[patient.lat, patient.lng], [hospital.lat, hospital.lng]], { color: "#555", weight: 2, dashArray: "6 6" }).addTo(layer.current);
    // fit when a party joins or leaves the map, or moves out of view, not on every move (the wall should not keep jumping)
    const key = valid.map((p) => p.kind).join(",");
    const outside = valid.some((p) => !m.getBounds().contains([p.lat, p.lng]));
    if (valid.length > 0 && (key !== fitted.current || outside)) {
      fitted.current = key;
      m.fitBounds(L.latLngBounds(valid.map((p) => [p.lat, p.lng])).pad(0.25), { maxZoom: 16 });
    }
  }, [points, labels]);

  return html`<div class="map" ref=${el} style=${{ height: `${height}px` }} role="img" aria-label="Map of the patient, responders and hospital"></div>`;
}

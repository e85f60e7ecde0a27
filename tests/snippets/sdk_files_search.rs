use palaver_sdk::protocol::RoomId;
use palaver_sdk::{Client, Error, SearchQuery};

async fn share_and_find(client: &Client, room: &RoomId, png: Vec<u8>) -> Result<usize, Error> {
    // Upload and share in one call: an `image` message (a `file` one for other types).
    let (file, sent) = client.send_file(room, "chart.png", png, "this week's chart").await?;
    println!("{} ({} bytes, {:?}×{:?}) is seq {}", file.name, file.size, file.width, file.height, sent.seq);
    let bytes = client.download(&file.file_id).await?; // members of the room only

    // Search this room, newest first, 20 hits a page, following the cursor.
    let query = SearchQuery::new("chart").in_room(room).newest_first().limit(20);
    let mut pager = client.search_pager(query);
    let mut hits = 0;
    while let Some(page) = pager.next_page().await? {
        hits += page.len();
    }
    println!("{hits} hits; the file has {} bytes", bytes.len());
    Ok(hits)
}
